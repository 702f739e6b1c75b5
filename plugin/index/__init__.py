"""The index: ingest into Qdrant, cross-modal search, collection versions and re-embedding."""
