"""Turn the Debian package ``papirus-icon-theme`` into an mmalign catalog (JSONL, image + text).

    apt-get install -y papirus-icon-theme
    python examples/papirus_catalog.py --out examples/data/papirus.jsonl

See ``connectors/datasets/papirus.py`` for what each item holds. Media are not copied: pass
``--media-root /usr/share/icons/Papirus/64x64`` to mmalign.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from mmalign.connectors.datasets.papirus import DEFAULT_SIZE, write_catalog
from mmalign.connectors.errors import SourceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="examples/data/papirus.jsonl", help="catalog file to write")
    parser.add_argument("--theme", type=Path, default=None, help="theme folder (default: from dpkg)")
    parser.add_argument("--size", default=DEFAULT_SIZE, help="size folder of the theme")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N icons (sorted by id)")
    args = parser.parse_args(argv)
    try:
        root, items = write_catalog(args.out, args.theme, args.size, args.limit)
    except SourceError as exc:
        print(exc, file=sys.stderr)
        return 1
    contexts = Counter(i["metadata"]["context"] for i in items)
    print(f"{len(items)} items ({', '.join(f'{c} {n}' for c, n in sorted(contexts.items()))}) -> {args.out}")
    print(f"media root: {root}  (pass --media-root {root} to mmalign)")
    return 0 if items else 1


if __name__ == "__main__":
    sys.exit(main())
