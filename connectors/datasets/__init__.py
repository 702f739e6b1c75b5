"""Builders of real catalogs and interaction files (tuxpaint stamps, Papirus icons, MovieLens-100k)."""
