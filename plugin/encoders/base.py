"""The encoder contract (sentence-transformers style): ``encode(inputs) -> float32 (n, d)``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.connectors.errors import ConfigError
from mmalign.plugin.encoders.registry import encoder_id
from mmalign.schemas import Modality
from mmalign.schemas.encoders import EncoderSpec

DEFAULT_BATCH_SIZE = {Modality.IMAGE: 32, Modality.TEXT: 64, Modality.AUDIO: 8}
#: On a GPU, small batches leave it idle between kernel launches: these are used there instead.
GPU_BATCH_SIZE = {Modality.IMAGE: 128, Modality.TEXT: 256, Modality.AUDIO: 8}


class Encoder(ABC):
    """A frozen encoder. Inputs: PIL images, strings, or mono float32 waveforms at ``sample_rate``."""

    def __init__(self, spec: EncoderSpec, device: str = "auto"):
        self.spec = spec
        self.device_preference = device

    @property
    def modality(self) -> Modality:
        return self.spec.modality

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def encoder_id(self) -> str:
        return encoder_id(self.spec)

    @property
    def default_batch_size(self) -> int:
        """Batch size of ``encode`` when none is given: larger on a GPU than on a CPU."""
        device = getattr(self, "device", None)
        on_gpu = getattr(device, "type", device) == "cuda"
        return (GPU_BATCH_SIZE if on_gpu else DEFAULT_BATCH_SIZE)[self.modality]

    def load_input(self, path: str | Path, item_id: str) -> Any:
        """Decode a media file into this encoder's input type (text encoders take strings, not files)."""
        from mmalign.connectors import media

        if self.modality is Modality.IMAGE:
            return media.load_image(path, item_id=item_id, background=tuple(self.spec.background))
        if self.modality is Modality.AUDIO:
            return media.load_audio(
                path, item_id=item_id, sample_rate=self.spec.sample_rate, max_seconds=self.spec.max_seconds
            )
        raise TypeError(f"{self.spec.name} encodes text; pass strings, not files")

    def encode(
        self, inputs: Sequence[Any], batch_size: int | None = None, show_progress_bar: bool | None = None
    ) -> np.ndarray:
        """Encode all inputs; returns float32 (n, dim). Rows may be non-finite for broken inputs: check them."""
        if len(inputs) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = list(self.iter_encode(inputs, batch_size=batch_size, show_progress_bar=show_progress_bar))
        return np.concatenate(chunks, axis=0)

    #: True when the encoder also says what it found in each input (e.g. the transcript of a clip):
    #: :meth:`encode_with_annotations` returns it, the feature cache keeps it, ingest puts it in the payload.
    annotates: bool = False

    def encode_with_annotations(self, inputs: Sequence[Any], batch_size: int | None = None) -> tuple[np.ndarray, list]:
        """(features (n, dim), one JSON-able dict per input); the dicts are empty unless ``annotates``."""
        if len(inputs) == 0:
            return np.zeros((0, self.dim), dtype=np.float32), []
        size = self._batch_size(batch_size)
        rows, notes = [], []
        for start in range(0, len(inputs), size):
            batch = list(inputs[start : start + size])
            out, batch_notes = self._encode_batch_annotated(batch)
            rows.append(self._checked(out, len(batch)))
            if len(batch_notes) != len(batch):
                raise RuntimeError(
                    f"encoder {self.spec.name!r} returned {len(batch_notes)} annotations for {len(batch)} inputs"
                )
            notes.extend(batch_notes)
        return np.concatenate(rows, axis=0), notes

    def _encode_batch_annotated(self, batch: list[Any]) -> tuple[np.ndarray, list[dict]]:
        """Features and annotations of one batch; encoders that annotate override this."""
        return self._encode_batch(batch), [{} for _ in batch]

    def _batch_size(self, batch_size: int | None) -> int:
        size = self.default_batch_size if batch_size is None else batch_size
        if size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {size}")
        return size

    def _checked(self, out, n: int) -> np.ndarray:
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (n, self.dim):
            raise RuntimeError(f"encoder {self.spec.name!r} returned shape {out.shape}, expected {(n, self.dim)}")
        return out

    def iter_encode(
        self, inputs: Sequence[Any], batch_size: int | None = None, show_progress_bar: bool | None = None
    ) -> Iterator[np.ndarray]:
        """Yield one float32 (b, dim) array per batch, so that callers can overlap work."""
        size = self.default_batch_size if batch_size is None else batch_size
        if size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {size}")
        progress = None
        if show_progress_bar:
            from tqdm import tqdm

            progress = tqdm(total=len(inputs), desc=f"encode {self.spec.name}", unit="item")
        try:
            for start in range(0, len(inputs), size):
                batch = list(inputs[start : start + size])
                out = np.asarray(self._encode_batch(batch), dtype=np.float32)
                if out.shape != (len(batch), self.dim):
                    raise RuntimeError(
                        f"encoder {self.spec.name!r} returned shape {out.shape}, expected {(len(batch), self.dim)}"
                    )
                if progress is not None:
                    progress.update(len(batch))
                yield out
        finally:
            if progress is not None:
                progress.close()

    @abstractmethod
    def _encode_batch(self, batch: list[Any]) -> np.ndarray:
        """Encode one batch."""


class TorchEncoder(Encoder):
    """Shared by torch-backed encoders: device choice, eval mode, inference mode, autocast on GPU.

    ``precision`` (fp32, bf16 or fp16; see :func:`~mmalign.plugin.encoders.device.resolve_precision`)
    is the autocast dtype on CUDA; it is an attribute, so a caller can compare precisions on one
    loaded model. The weights themselves always stay fp32, whatever dtype the checkpoint has.
    """

    def __init__(self, spec: EncoderSpec, device: str = "auto", precision: str | None = None):
        super().__init__(spec, device)
        import torch

        from mmalign.plugin.encoders.device import resolve_precision, select_device

        self.device = select_device(device)
        self.precision = resolve_precision(self.device, precision)
        self.model = self._build_deterministic().to(device=self.device, dtype=torch.float32).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    def _build_deterministic(self):
        """Random-init towers (``weights`` None: tiny test towers) get the same weights every time,
        seeded from the encoder id, so features cached by one process match queries of another."""
        import torch

        if self.spec.weights is not None:
            return self._build()
        seed = int(self.encoder_id.split(":")[1], 16) % (2**31)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._build()

    @abstractmethod
    def _build(self):
        """Build the torch module with its weights loaded."""

    def _run(self, fn, *args):
        import torch

        from mmalign.plugin.encoders.device import autocast

        with torch.inference_mode(), autocast(self.device, self.precision):
            out = fn(*args)
        return out.float().cpu().numpy()

    def _to_device(self, tensor):
        """Host tensor -> this encoder's device; through pinned memory and a non-blocking copy on CUDA."""
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)
