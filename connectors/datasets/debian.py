"""Where a Debian package put its files: the usual folder, else what ``dpkg -L`` lists."""

from __future__ import annotations

from pathlib import Path


def package_folder(package: str, default: Path, suffix: str) -> Path | None:
    """``default`` when it is a folder, else the folder of ``dpkg -L package`` whose path ends with
    ``suffix``; None when the package is not installed (or dpkg is missing)."""
    if default.is_dir():
        return default
    import subprocess

    try:
        listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in listing.splitlines():
        if line.rstrip("/").endswith(suffix):
            return Path(line)
    return None
