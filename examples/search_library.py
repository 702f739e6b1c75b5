"""Cross-modal search from Python (run `mmalign quickstart` first: it builds the `stamps` collection).

python examples/search_library.py "a sailing boat"
"""

from __future__ import annotations

import sys

from mmalign.plugin import Searcher
from mmalign.schemas import StoreConfig


def main(argv: list[str]) -> int:
    query = argv[0] if argv else "a sailing boat"
    searcher = Searcher("stamps", store=StoreConfig(path="mmalign-data/qdrant"))
    try:
        for using in ("image", "text", "fused"):
            hits = searcher.search(text=[query], using=using, k=3)
            print(f'"{query}" against the {using} vectors:')
            for hit in hits:
                print(f"  {hit.score:.3f}  {hit.id:<40} {hit.payload.get('text')}")
        hits = searcher.search(text=[query], k=3, filters={"category": "vehicles"})
        print("only vehicles:", [h.id for h in hits])
    finally:
        searcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
