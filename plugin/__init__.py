"""mmalign: multimodal retrieval for Qdrant.

The public API::

    from mmalign.plugin import Searcher, Recommender, ingest, reembed, train_bundle, load_bundle

Importing this package is cheap: those names are resolved on first use (:func:`__getattr__`), and torch,
transformers, open_clip and librosa are imported only by the functions that need them.
"""

from mmalign.plugin.encoders.registry import (
    DEFAULT_PRESET,
    encoder_id,
    get_embedding_size,
    get_encoder_spec,
    get_preset,
    list_encoders,
    list_presets,
    register_encoder,
    register_preset,
)

__version__ = "0.1.0"

#: Public names imported on first use: name -> module that defines it.
_LAZY = {
    "Searcher": "mmalign.plugin.index.search",
    "SearchQuery": "mmalign.plugin.index.search",
    "QueryEncoder": "mmalign.plugin.index.query_encoder",
    "Recommender": "mmalign.plugin.recommend.recommender",
    "ingest": "mmalign.plugin.index.ingest",
    "reembed": "mmalign.plugin.index.reembed",
    "rollback": "mmalign.plugin.index.versions",
    "train_bundle": "mmalign.plugin.workflows.train",
    "load_bundle": "mmalign.plugin.align.bundle",
    "VectorStore": "mmalign.connectors.store",
    "StoreConfig": "mmalign.schemas",
}


def __getattr__(name: str):
    """The public classes and functions, imported when first asked for (``import mmalign.plugin`` stays fast)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmalign.plugin' has no attribute {name!r}; public names: {sorted(__all__)}")


def build_encoder(spec_or_name, device: str = "auto"):
    """Build (load) the encoder for a spec or registered name; see :mod:`plugin.encoders`."""
    from mmalign.plugin.encoders import build_encoder as _build

    return _build(spec_or_name, device=device)


def extract_features(*args, **kwargs):
    """Encode a catalog into the feature cache; see :func:`mmalign.plugin.features.extract.extract_features`."""
    from mmalign.plugin.features.extract import extract_features as _extract

    return _extract(*args, **kwargs)


__all__ = [
    *_LAZY,
    "DEFAULT_PRESET",
    "__version__",
    "build_encoder",
    "encoder_id",
    "extract_features",
    "get_embedding_size",
    "get_encoder_spec",
    "get_preset",
    "list_encoders",
    "list_presets",
    "register_encoder",
    "register_preset",
]
