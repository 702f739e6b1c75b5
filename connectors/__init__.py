"""Where items come from (catalog sources, media loading) and where vectors go (the Qdrant store).

Heavy libraries (PIL, librosa, qdrant-client) are imported inside the functions that need them.
"""

from connectors.errors import ItemError, MediaError, SourceError

__all__ = ["ItemError", "MediaError", "SourceError"]
