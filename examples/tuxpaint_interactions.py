"""Synthetic interactions for the tuxpaint catalog, so that `mmalign recommend` has users to serve.

These users are made up (tuxpaint has no users): one per top-level category ("animals-fan",
"food-fan", ...), each having "liked" 6 stamps of that category and disliked 2 of another,
at increasing timestamps. Deterministic (seeded). Not for measuring quality: use MovieLens.

    python examples/tuxpaint_interactions.py --catalog examples/data/tuxpaint.jsonl \
        --out examples/data/tuxpaint_interactions.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import defaultdict
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", default="examples/data/tuxpaint.jsonl")
    parser.add_argument("--out", default="examples/data/tuxpaint_interactions.csv")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    by_category: dict[str, list[str]] = defaultdict(list)
    with open(args.catalog, encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            by_category[item["metadata"]["category"]].append(item["id"])
    rng = random.Random(args.seed)
    categories = sorted(c for c, ids in by_category.items() if len(ids) >= 8)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t = 1_700_000_000
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "weight", "timestamp"])
        for category in categories:
            other = rng.choice([c for c in categories if c != category])
            for item in rng.sample(by_category[category], 6):
                writer.writerow([f"{category}-fan", item, 5, t])
                t += 3600
            for item in rng.sample(by_category[other], 2):
                writer.writerow([f"{category}-fan", item, 1, t])
                t += 3600
    print(f"{len(categories)} synthetic users ({', '.join(c + '-fan' for c in categories[:3])}, ...) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
