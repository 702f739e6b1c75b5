"""Resolve media paths under a declared root; anything escaping the root is rejected."""

from __future__ import annotations

from pathlib import Path

from mmalign.connectors.errors import MediaError


def resolve_media_path(ref: str, root: str | Path, *, item_id: str, modality: str) -> Path:
    """Return the absolute path of ``ref`` (relative to ``root`` unless absolute).

    The resolved path (symlinks followed) must lie inside ``root``; ``../`` tricks and
    absolute paths elsewhere raise :class:`MediaError`. Existence is checked too.
    """
    root_path = Path(root).resolve()
    candidate = Path(ref)
    if not candidate.is_absolute():
        candidate = root_path / candidate
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root_path):
        raise MediaError(
            item_id,
            f"path resolves to {str(resolved)!r}, outside the media root {str(root_path)!r}",
            path=ref,
            modality=modality,
        )
    if not resolved.is_file():
        reason = "is a directory, not a file" if resolved.is_dir() else "file not found"
        raise MediaError(item_id, f"{reason} (looked at {str(resolved)!r})", path=ref, modality=modality)
    return resolved
