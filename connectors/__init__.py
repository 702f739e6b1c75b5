"""Where items come from (catalog sources, media loading) and where vectors go (the Qdrant store).

Heavy libraries (PIL, librosa, qdrant-client) are imported inside the functions that need them.
"""

from mmalign.connectors.errors import (
    BatchError,
    BundleError,
    ConfigError,
    DataError,
    ItemError,
    MediaError,
    MmalignError,
    RegistryError,
    SourceError,
    StoreError,
    WeightsError,
)

__all__ = [
    "BatchError",
    "BundleError",
    "ConfigError",
    "DataError",
    "ItemError",
    "MediaError",
    "MmalignError",
    "RegistryError",
    "SourceError",
    "StoreError",
    "WeightsError",
]
