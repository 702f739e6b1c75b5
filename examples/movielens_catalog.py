"""MovieLens-100k (from the PyPI package recbole) as an mmalign catalog: movies with text only.

    pip install --no-deps recbole
    python examples/movielens_catalog.py --out examples/data/ml100k.jsonl

Prints where the interactions file (``ml-100k.inter``: user_id, item_id, rating, timestamp) is;
mmalign reads it as it is.
"""

from __future__ import annotations

import argparse
import sys

from mmalign.connectors.datasets.movielens import write_catalog
from mmalign.connectors.errors import SourceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="examples/data/ml100k.jsonl")
    args = parser.parse_args(argv)
    try:
        interactions, n = write_catalog(args.out)
    except SourceError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{n} movies -> {args.out}")
    print(f"interactions: {interactions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
