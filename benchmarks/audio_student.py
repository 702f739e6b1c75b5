"""The distilled audio student: a small CNN on log-mel that reproduces a teacher audio encoder's features.

Measured in docs/audio.md and not worth deploying as it is (66 % of the teacher's recall at 357x less
cost per clip), so it lives with the benchmark that measures it, not among the shipped encoders.

The teacher (e.g. ``speech-sfx``: Whisper transcription + MiniLM + the aiSFX CNN) is what a bundle is
trained on; it is expensive per clip. The student maps a clip straight to the teacher's feature space (same
dim), so a bundle trained on the teacher projects the student's output unchanged: queries can take the
cheap path. It is trained (:func:`train_audio_student`) on the clips of the training items, to make the
*projected* student vector agree with the projected teacher vector (cosine in the bundle's shared space),
plus a small regression term on the standardised raw features.

Network (``AudioStudentSpec``): the clip, peak-normalised, at 16 kHz; ``n_mels`` log-mel bands (torch STFT);
batch norm; per entry of ``channels`` one 3x3 conv + batch norm + ReLU + 2x2 max pooling; mean over
frequency; mean and max over the frames that hold the clip; a ``hidden`` ReLU layer; a linear output of the
teacher's dim. About half a million parameters with the defaults.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mmalign.plugin.encoders.base import TorchEncoder
from mmalign.plugin.encoders.weights import WeightsError, resolve_local
from mmalign.schemas import Modality

log = logging.getLogger(__name__)


class AudioStudentSpec(BaseModel):
    """A small CNN on log-mel, distilled to reproduce a teacher audio encoder's features (same dim), so that
    a bundle trained on the teacher serves queries at a fraction of the cost. ``weights``: its safetensors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["audio_student"] = "audio_student"
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    dim: int = Field(gt=0, description="Size of the feature vector it returns (the teacher's).")
    description: str = ""
    weights: str | None = None
    teacher_id: str = Field(min_length=1, description="Encoder id of the teacher whose features it reproduces.")
    sample_rate: int = Field(default=16000, gt=0)
    n_mels: int = Field(default=64, gt=0)
    n_fft: int = Field(default=400, gt=0)
    hop_length: int = Field(default=160, gt=0)
    channels: tuple[int, ...] = Field(default=(32, 64, 128, 128), min_length=1)
    hidden: int = Field(default=256, gt=0)
    max_seconds: float = Field(default=10.0, gt=0)

    @property
    def modality(self) -> Modality:
        return Modality.AUDIO


def build_network(spec):
    import torch
    from torch import nn

    class LogMel(nn.Module):
        def __init__(self):
            super().__init__()
            import librosa

            fb = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels)
            self.register_buffer("fb", torch.from_numpy(np.asarray(fb, dtype=np.float32)), persistent=False)
            self.register_buffer("window", torch.hann_window(spec.n_fft), persistent=False)

        def forward(self, wave):  # (B, samples) -> (B, 1, mels, frames)
            stft = torch.stft(wave, spec.n_fft, spec.hop_length, window=self.window, return_complex=True)
            mel = self.fb @ stft.abs().pow(2)
            return torch.log(mel + 1e-6).unsqueeze(1)

    class Student(nn.Module):
        def __init__(self):
            super().__init__()
            self.logmel = LogMel()
            self.norm = nn.BatchNorm2d(1)
            layers, cin = [], 1
            for cout in spec.channels:
                layers += [
                    nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(),
                    nn.MaxPool2d(2, ceil_mode=True),
                ]
                cin = cout
            self.conv = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.Linear(2 * cin, spec.hidden), nn.ReLU(), nn.Linear(spec.hidden, spec.dim))
            self.reduction = 2 ** len(spec.channels)

        def forward(self, wave, lengths):
            """``wave`` (B, samples), zero-padded; ``lengths``: samples of each clip."""
            x = self.conv(self.norm(self.logmel(wave))).mean(dim=2)  # (B, C, frames')
            frames = torch.div(lengths, spec.hop_length, rounding_mode="floor") + 1
            valid = torch.div(frames + self.reduction - 1, self.reduction, rounding_mode="floor").clamp(1, x.shape[-1])
            mask = torch.arange(x.shape[-1], device=x.device)[None, :] < valid[:, None]
            mean = (x * mask[:, None]).sum(-1) / valid[:, None]
            peak = x.masked_fill(~mask[:, None], float("-inf")).amax(-1)
            return self.head(torch.cat([mean, peak], dim=1))

    return Student()


def batch_waves(waves: Sequence[np.ndarray], sample_rate: int, max_seconds: float, min_samples: int):
    """Peak-normalised clips, cut to ``max_seconds``, zero-padded into one (B, samples) array + lengths."""
    limit = int(max_seconds * sample_rate)
    clips = []
    for wave in waves:
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)[:limit]
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        clips.append(wave / peak if peak > 0 else wave)
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    out = np.zeros((len(clips), max(int(lengths.max(initial=0)), min_samples)), dtype=np.float32)
    for row, clip in zip(out, clips):
        row[: len(clip)] = clip
    return out, lengths


class AudioStudentEncoder(TorchEncoder):
    def _build(self):
        spec = self.spec
        model = build_network(spec)
        if spec.weights is None:  # tiny test towers, or a student about to be trained
            return model
        path = resolve_local(spec.weights)
        if path is None or path.suffix != ".safetensors":
            raise WeightsError(
                f"encoder {spec.name!r}: weights must be the student's .safetensors file, got {spec.weights!r}"
            )
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"encoder {spec.name!r}: {str(path)!r} does not fit the spec's network: {exc}") from exc
        return model

    def _encode_batch(self, batch):
        """One clip at a time: zero padding would reach into the convolutions at the clip's end, and a
        clip's vector must not depend on the batch it came in (the network is cheap enough)."""
        import torch

        rows = []
        for clip in batch:
            wave, lengths = batch_waves([clip], self.spec.sample_rate, self.spec.max_seconds, self.spec.n_fft)
            x = self._to_device(torch.from_numpy(wave))
            rows.append(self._run(self.model, x, self._to_device(torch.from_numpy(lengths)))[0])
        return np.stack(rows)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


@dataclass
class StudentTraining:
    state: dict  # tensors of the best epoch (by validation cosine)
    best_epoch: int
    best_val: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def train_audio_student(
    spec,
    waves: Sequence[np.ndarray],
    targets: np.ndarray,
    *,
    project: Callable | None = None,
    val_waves: Sequence[np.ndarray] = (),
    val_targets: np.ndarray | None = None,
    epochs: int = 40,
    batch_size: int = 32,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    raw_weight: float = 0.1,
    aux_columns: Sequence[int] = (),
    noise: tuple[float, float] = (15.0, 40.0),
    patience: int = 8,
    seed: int = 0,
    echo: Callable[[str], None] = log.info,
) -> StudentTraining:
    """Fit the student to the teacher's features ``targets`` (n, spec.dim) of the clips ``waves``.

    ``project`` maps raw teacher-space features (a torch tensor) to the bundle's unit vectors; the loss is
    ``1 - cos(project(student), project(teacher))`` plus ``raw_weight`` times the mean squared error of the
    raw features standardised by the training targets, plus the squared error of the ``aux_columns``
    (e.g. the teacher's speech probability, which routing reads) as they are. Each step adds white noise
    at a random SNR in ``noise`` dB to the clips. The epoch with the best validation cosine is kept (early stopping).
    """
    import torch

    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_network(spec)
    targets = np.asarray(targets, dtype=np.float32)
    mu, sd = targets.mean(0), targets.std(0) + 1e-3
    mu_t, sd_t = torch.from_numpy(mu), torch.from_numpy(sd)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * int(np.ceil(len(waves) / batch_size)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    prepared = [batch_waves([w], spec.sample_rate, spec.max_seconds, spec.n_fft)[0][0] for w in waves]

    aux = list(aux_columns)

    def loss_of(pred, target):
        raw = ((pred - target) / sd_t).pow(2).mean()
        if aux:
            raw = raw + (pred[:, aux] - target[:, aux]).pow(2).mean() / max(raw_weight, 1e-6)
        if project is None:
            return raw, raw
        a, b = project(pred), project(target)
        cos = 1 - torch.nn.functional.cosine_similarity(a, b, dim=-1).mean()
        return cos + raw_weight * raw, cos

    def evaluate() -> float:
        if not len(val_waves):
            return float("nan")
        model.eval()
        with torch.no_grad():
            scores = []
            for start in range(0, len(val_waves), 64):
                w, n = batch_waves(val_waves[start : start + 64], spec.sample_rate, spec.max_seconds, spec.n_fft)
                pred = model(torch.from_numpy(w), torch.from_numpy(n))
                scores.append(loss_of(pred, torch.from_numpy(val_targets[start : start + 64]))[1].item())
        return 1 - float(np.mean(scores))

    best = (-np.inf, 0, None)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(prepared))
        total = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            clips = []
            for i in index:
                clip = prepared[i].copy()
                snr = rng.uniform(*noise)
                power = float(np.mean(clip**2)) + 1e-12
                clip += rng.standard_normal(len(clip)).astype(np.float32) * np.sqrt(power / 10 ** (snr / 10))
                clips.append(clip)
            w, n = batch_waves(clips, spec.sample_rate, spec.max_seconds, spec.n_fft)
            pred = model(torch.from_numpy(w), torch.from_numpy(n))
            loss, _ = loss_of(pred, torch.from_numpy(targets[index]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(index)
        val = evaluate()
        history.append({"epoch": epoch, "train_loss": total / len(order), "val_cos": val})
        echo(f"audio student epoch {epoch}: train loss {total / len(order):.4f}, val cos {val:.4f}")
        if not len(val_waves) or val > best[0]:
            best = (val, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        elif epoch - best[1] >= patience:
            break
    del mu_t
    return StudentTraining(best[2], best[1], float(best[0]), history, time.perf_counter() - started)
