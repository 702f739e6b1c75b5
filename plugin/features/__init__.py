"""Features: extraction through the frozen encoders, the on-disk cache, paired feature tables."""
