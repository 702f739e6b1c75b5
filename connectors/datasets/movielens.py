"""MovieLens-100k as shipped inside the PyPI package ``recbole`` (``dataset_example/ml-100k``).

Items are movies with text only (title, year, genres): an honest single-modality catalog.
Interactions are the 100,000 ratings (``ml-100k.inter``: user_id, item_id, rating, timestamp),
readable directly by :func:`connectors.interactions.read_interactions`.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

from mmalign.connectors.errors import SourceError

INSTALL_HINT = "pip install --no-deps recbole  (only its data files are used)"


def find_ml100k() -> Path:
    """The ml-100k folder inside the installed recbole package (found without importing recbole)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise SourceError(f"MovieLens-100k needs the recbole package: {INSTALL_HINT}")
    folder = Path(spec.origin).parent / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise SourceError(f"{folder} has no ml-100k.inter; reinstall recbole")
    return folder


def write_catalog(out: str | Path, folder: Path | None = None) -> tuple[Path, int]:
    """Write movies as catalog items (text = "Title (year). Genres: a, b"); returns (interactions file, n)."""
    folder = folder or find_ml100k()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with (
        open(folder / "ml-100k.item", encoding="utf-8", errors="replace", newline="") as handle,
        open(out, "w", encoding="utf-8") as sink,
    ):
        reader = csv.reader(handle, delimiter="\t")
        header = [h.split(":")[0] for h in next(reader)]
        for row in reader:
            rec = dict(zip(header, row))
            genres = rec.get("class", "").split()
            year = rec.get("release_year", "").strip()
            title = rec.get("movie_title", "").strip()
            text = (
                f"{title} ({year}). Genres: {', '.join(genres)}." if year else f"{title}. Genres: {', '.join(genres)}."
            )
            item = {"id": rec["item_id"], "text": text, "metadata": {"title": title, "year": year, "genres": genres}}
            sink.write(json.dumps(item) + "\n")
            n += 1
    return folder / "ml-100k.inter", n
