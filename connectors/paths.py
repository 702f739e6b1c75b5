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
        raise MediaError(item_id, f"{_not_a_file(resolved)} (looked at {str(resolved)!r})", path=ref, modality=modality)
    return resolved


def _not_a_file(path: Path) -> str:
    """Why ``path`` is not a regular file: what it is instead (a FIFO would block a reader forever)."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    kinds = [
        (stat.S_ISDIR, "is a directory"),
        (stat.S_ISFIFO, "is a named pipe (FIFO)"),
        (stat.S_ISCHR, "is a character device"),
        (stat.S_ISBLK, "is a block device"),
        (stat.S_ISSOCK, "is a socket"),
    ]
    what = next((text for test, text in kinds if test(mode)), "is not a regular file")
    return f"{what}, not a regular file"
