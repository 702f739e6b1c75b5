"""Turn the Debian package ``tuxpaint-stamps-default`` into an mmalign catalog (JSONL).

    apt-get install -y tuxpaint-stamps-default
    python examples/tuxpaint_catalog.py --out examples/data/tuxpaint.jsonl

See ``connectors/datasets/tuxpaint.py`` for what each item holds. Media are not copied: pass
``--media-root /usr/share/tuxpaint/stamps`` to mmalign.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmalign.connectors.datasets.tuxpaint import write_catalog
from mmalign.connectors.errors import SourceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="examples/data/tuxpaint.jsonl", help="catalog file to write")
    parser.add_argument("--stamps", type=Path, default=None, help="stamps folder (default: from dpkg)")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N stamps (sorted by id)")
    args = parser.parse_args(argv)
    try:
        root, items = write_catalog(args.out, args.stamps, args.limit)
    except SourceError as exc:
        print(exc, file=sys.stderr)
        return 1
    with_audio = sum("audio" in i for i in items)
    with_text = sum(bool(i["text"]) for i in items)
    print(f"{len(items)} items ({with_text} with text, {with_audio} with a sound effect) -> {args.out}")
    print(f"media root: {root}  (pass --media-root {root} to mmalign)")
    return 0 if items else 1


if __name__ == "__main__":
    sys.exit(main())
