"""Builders of real catalogs and interaction files (tuxpaint stamps, MovieLens-100k)."""
