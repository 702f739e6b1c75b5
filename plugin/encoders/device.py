"""Device auto-selection: cuda, then mps, then cpu."""

from __future__ import annotations

from mmalign.connectors.errors import ConfigError

VALID_DEVICES = ("auto", "cpu", "cuda", "mps")


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
    if base == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for but it is not available")
    return torch.device(preference)


def autocast(device):
    """bf16 autocast on CUDA, a no-op elsewhere (CPU autocast would only slow small models)."""
    import contextlib

    import torch

    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
