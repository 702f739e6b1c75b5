"""Device auto-selection (cuda, then mps, then cpu) and the mixed precision used on each."""

from __future__ import annotations

import os

from mmalign.connectors.errors import ConfigError

VALID_DEVICES = ("auto", "cpu", "cuda", "mps")
#: Numeric precision of the encoder forward pass: fp32, or autocast to bf16/fp16 (CUDA only).
PRECISIONS = ("fp32", "bf16", "fp16")
#: Environment override of the default precision on CUDA (e.g. ``MMALIGN_PRECISION=fp32``).
PRECISION_ENV = "MMALIGN_PRECISION"


def select_device(preference: str = "auto"):
    """Return a ``torch.device``; ``preference`` is auto, cpu, cuda, cuda:N or mps."""
    import torch

    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = preference.split(":")[0]
    if base not in VALID_DEVICES:
        raise ConfigError(f"unknown device {preference!r}; valid: {list(VALID_DEVICES)} (or cuda:N)")
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA device")
    if base == "cuda" and ":" in preference:
        index = preference.split(":", 1)[1]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise ConfigError(f"device {preference!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    if base == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for but it is not available")
    return torch.device(preference)


def resolve_precision(device, precision: str | None = None) -> str:
    """The precision an encoder runs at on ``device``.

    ``None`` means the default: ``$MMALIGN_PRECISION`` if set, else bf16 on a CUDA device that
    supports it and fp16 on one that does not (pre-Ampere GPUs emulate bf16 slowly). Anything
    but CUDA runs fp32 (CPU autocast would only slow these small models down).
    """
    if precision is None:
        precision = os.environ.get(PRECISION_ENV) or None
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {list(PRECISIONS)}")
    if device.type != "cuda":
        return "fp32"
    if precision is None:
        return "bf16" if native_bf16(device) else "fp16"
    return precision


def native_bf16(device) -> bool:
    """True where the GPU computes in bf16 natively (Ampere and later), not through slow emulation."""
    import torch

    return torch.cuda.get_device_capability(device)[0] >= 8


def autocast(device, precision: str | None = None):
    """Autocast to ``precision`` (see :func:`resolve_precision`) on CUDA, a no-op elsewhere and for fp32."""
    import contextlib

    import torch

    precision = resolve_precision(device, precision)
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)
