"""The aiSFX sound-effects encoder (Ma & Lerch, ISMIR 2022), rebuilt here from its published architecture.

The PyPI package ``aisfx`` ships the checkpoint of its best model (X-Sequential-CE: a 9-layer CNN trained to
classify the categories of professional sound-effects libraries). Its code pins old numpy/librosa, so it is
installed without dependencies and never imported: only its checkpoint is read, once, with
``weights_only=True`` and numpy's scalar types allowed (``weights.load_legacy_checkpoint``), then kept as
safetensors. The classifier heads are dropped; the 512-d block embedding is the feature.

Input: the clip, peak-normalised, at 44.1 kHz; 96-band HTK mel power spectrogram (2048-sample window,
1024 hop, unit-sum filters), ``log10(1e4 x + 1)`` scaled by the package's min-max constant; blocks of 100
frames (about 2.3 s) every 50 frames, zero-padded. Each block gives 512 values (mean over frequency, max
over time of the last conv block); the clip's feature is the mean and the max over its blocks.
"""

from __future__ import annotations

import numpy as np

from mmalign.plugin.encoders.base import TorchEncoder
from mmalign.plugin.encoders.weights import (
    WeightsError,
    converted_checkpoint,
    load_legacy_checkpoint,
    resolve_local,
)

#: Prefix of the embedding network's tensors in the aiSFX checkpoint (the rest are classifier heads).
CHECKPOINT_PREFIX = "embedding_net."
#: Blocks per forward pass (a 30 s clip has about 25): bounds the activations' memory.
MAX_BLOCKS = 64


def build_network(channels: int):
    """aiSFX's EmbeddingNet: four blocks of two 3x3 conv + batch norm + ReLU, 2x2 max pooling after the first
    three; widths c, 2c, 4c, 8c. Input (batch, frames, mel bands) -> (batch, 8c)."""
    import torch
    from torch import nn

    class ConvBlock(nn.Module):
        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
            self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.bn2 = nn.BatchNorm2d(cout)

        def forward(self, x, pool: bool):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.bn2(self.conv2(x)))
            return nn.functional.max_pool2d(x, 2) if pool else x

    class EmbeddingNet(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.conv_block1 = ConvBlock(1, c)
            self.conv_block2 = ConvBlock(c, 2 * c)
            self.conv_block3 = ConvBlock(2 * c, 4 * c)
            self.conv_block4 = ConvBlock(4 * c, 8 * c)

        def forward(self, blocks):
            x = blocks.unsqueeze(1)
            x = self.conv_block1(x, True)
            x = self.conv_block2(x, True)
            x = self.conv_block3(x, True)
            x = self.conv_block4(x, False)
            return x.mean(dim=3).amax(dim=2)

    return EmbeddingNet(channels)


def _read_aisfx_checkpoint(path):
    """The embedding network's tensors of the aiSFX checkpoint (a pickle of (state dict, {dataset: (numpy
    int, classes)})), without their prefix. Batch-norm counters are dropped: they do not change the output."""
    checkpoint = load_legacy_checkpoint(path)
    state = checkpoint[0] if isinstance(checkpoint, (tuple, list)) else checkpoint
    if not isinstance(state, dict):
        raise WeightsError(f"checkpoint {str(path)!r} holds no state dict")
    tensors = {
        k.removeprefix(CHECKPOINT_PREFIX): v
        for k, v in state.items()
        if k.startswith(CHECKPOINT_PREFIX) and not k.endswith("num_batches_tracked")
    }
    if not tensors:
        raise WeightsError(f"checkpoint {str(path)!r} has no {CHECKPOINT_PREFIX}* tensors: not an aiSFX checkpoint")
    return tensors


class AisfxAudioEncoder(TorchEncoder):
    """Sound-effects embedding: aiSFX block embeddings pooled (mean and max) over the clip."""

    def _build(self):
        spec = self.spec
        model = build_network(spec.channels)
        if spec.weights is None:  # tiny test towers only
            return model
        path = resolve_local(spec.weights)
        if path is None:
            raise WeightsError(
                f"encoder {spec.name!r}: weights must be a local checkpoint or a pkg: tag, got {spec.weights!r}"
            )
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path))
        else:
            tensors = converted_checkpoint(path, "aisfx", _read_aisfx_checkpoint)
        expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        missing = sorted(set(expected) - set(tensors))
        if missing:
            raise WeightsError(f"encoder {spec.name!r}: checkpoint lacks {missing[:5]} (is it aiSFX?)")
        for key, ref in expected.items():
            if tuple(tensors[key].shape) != tuple(ref.shape):
                raise WeightsError(
                    f"encoder {spec.name!r}: checkpoint tensor {key} is {tuple(tensors[key].shape)}, the network "
                    f"wants {tuple(ref.shape)} (channels={spec.channels})"
                )
        model.load_state_dict({k: tensors[k] for k in expected}, strict=False)
        return model

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """(frames, n_mels) float32, scaled as aiSFX's training data was."""
        import librosa

        spec = self.spec
        wave = np.asarray(wave, dtype=np.float32)
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        if peak > 0:
            wave = wave / peak
        mel = librosa.feature.melspectrogram(
            y=wave,
            sr=spec.sample_rate,
            n_fft=spec.n_fft,
            win_length=spec.n_fft,
            hop_length=spec.hop_length,
            n_mels=spec.n_mels,
            fmin=0.0,
            fmax=spec.sample_rate / 2,
            htk=True,
            norm=1.0,
            power=2.0,
        )
        return (np.log10(mel * 1e4 + 1.0) / spec.log_max).T.astype(np.float32)

    def blocks(self, frames: np.ndarray) -> np.ndarray:
        """aiSFX's blocking: full blocks every ``block_hop`` frames (a partial last one dropped), at least one
        block, zero-padded. Returns (n_blocks, block_frames, n_mels)."""
        size, hop = self.spec.block_frames, self.spec.block_hop
        n = len(frames)
        count = int(np.ceil((n - size) / hop + 1)) if n > size else 1
        if n > size and (n - size) % hop != 0:
            count -= 1
        count = max(count, 1)
        padded = np.concatenate([frames, np.zeros((size, frames.shape[1]), np.float32)])
        return np.stack([padded[i * hop : i * hop + size] for i in range(count)])

    def _encode_batch(self, batch):
        import torch

        per_clip = [self.blocks(self.log_mel(w)) for w in batch]
        counts = [len(b) for b in per_clip]
        blocks = np.concatenate(per_clip)
        emb = torch.from_numpy(
            np.concatenate(
                [
                    self._run(self.model, self._to_device(torch.from_numpy(blocks[i : i + MAX_BLOCKS])))
                    for i in range(0, len(blocks), MAX_BLOCKS)
                ]
            )
        )
        rows = []
        for part in torch.split(emb, counts):
            pooled = []
            if self.spec.pooling in ("mean", "mean_max"):
                pooled.append(part.mean(0))
            if self.spec.pooling in ("max", "mean_max"):
                pooled.append(part.amax(0))
            rows.append(torch.cat(pooled).numpy())
        return np.stack(rows)
