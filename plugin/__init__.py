"""mmalign: multimodal retrieval for Qdrant.

Importing this package is cheap: torch, transformers, open_clip and librosa are imported
only by the functions that need them.
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


def build_encoder(spec_or_name, device: str = "auto"):
    """Build (load) the encoder for a spec or registered name; see :mod:`plugin.encoders`."""
    from mmalign.plugin.encoders import build_encoder as _build

    return _build(spec_or_name, device=device)


def extract_features(*args, **kwargs):
    """Encode a catalog into the feature cache; see :func:`mmalign.plugin.features.extract.extract_features`."""
    from mmalign.plugin.features.extract import extract_features as _extract

    return _extract(*args, **kwargs)


__all__ = [
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
