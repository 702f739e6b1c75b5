"""Does colour close the base bundle's domain gap? (issue #21)

The pool's icons are black glyphs on white; the catalogs it is meant to transfer to are coloured (stamps,
pixel-art units, application icons). This benchmark adds coloured variants of the first ``--n`` pool
icons (the glyph in a random saturated colour on white, or in white on a rounded square of a random
colour: half each), as their own sources (centred apart from the black originals) and in the same concept
groups (so the held-out groups stay held out), pretrains a base on originals + variants, and compares its
zero-shot recall on the catalogs (centred on each catalog's training items, as ``benchmarks.alignment``)
with the shipped base's (``benchmarks.base_prior zero-shot``).

    python -m benchmarks.pool_colours --pool mmalign-data/pool/pool.jsonl --n 6000 [--originals 8000]
"""

from __future__ import annotations

import argparse
import colorsys
import json
import re
import time
from pathlib import Path

import numpy as np

_BLACK = re.compile(r'(fill|stroke)="(#000|#000000|black|currentColor)"')


def colour_svg(svg: str, rng: np.random.Generator) -> str:
    """The icon in a random colour on white, or in white on a rounded square of a random colour."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), 0.55 + 0.4 * rng.random(), 0.55 + 0.4 * rng.random())
    colour = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
    if rng.random() < 0.5:
        return _BLACK.sub(lambda m: f'{m.group(1)}="{colour}"', svg)
    inner = _BLACK.sub(lambda m: f'{m.group(1)}="#fff"', svg)
    view = re.search(r'viewBox="([-\d.]+) ([-\d.]+) ([\d.]+) ([\d.]+)"', svg)
    x, y, w, h = (float(v) for v in view.groups()) if view else (0.0, 0.0, 24.0, 24.0)
    pad = 0.2 * max(w, h)
    start = inner.index(">") + 1
    rect = (
        f'<rect x="{x - pad}" y="{y - pad}" width="{w + 2 * pad}" height="{h + 2 * pad}" '
        f'rx="{0.25 * (w + 2 * pad)}" fill="{colour}"/>'
    )
    shown = inner[:start] + rect + inner[start:]
    return re.sub(r'viewBox="[^"]*"', f'viewBox="{x - pad} {y - pad} {w + 2 * pad} {h + 2 * pad}"', shown, count=1)


def write_pool(pool: Path, out: Path, n: int, originals: int, seed: int = 0) -> Path:
    """A pool catalog of the first ``originals`` items and coloured variants of the first ``n``."""
    rng = np.random.default_rng(seed)
    rows = [json.loads(line) for line in pool.read_text().splitlines() if line.strip()]
    media = out / "media"
    lines = []
    for row in rows[:originals]:
        lines.append({**row, "image": str((pool.parent / row["image"]).resolve())})
    for row in rows[:n]:
        source = pool.parent / row["image"]
        target = media / row["image"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(colour_svg(source.read_text(), rng))
        metadata = {**row["metadata"], "source": row["metadata"]["source"] + "~colour"}
        lines.append({**row, "id": row["id"] + "~colour", "image": str(target.resolve()), "metadata": metadata})
    catalog = out / "pool-colour.jsonl"
    catalog.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return catalog


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=Path("mmalign-data/pool/pool.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("mmalign-data/pool-colour"))
    parser.add_argument("--n", type=int, default=6000, help="coloured variants of the first N pool icons")
    parser.add_argument("--originals", type=int, default=8000, help="the first N black originals (the base's)")
    parser.add_argument("--features", default="mmalign-data/features")
    parser.add_argument("--catalogs", nargs="+", default=["wesnoth", "tuxpaint"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--data", type=Path, default=Path("mmalign-data/benchmarks"))
    parser.add_argument("--epochs", type=int, default=20, help="teacher epochs at most (the shipped base: 20)")
    args = parser.parse_args(argv)
    from benchmarks import base_prior
    from mmalign.plugin.workflows.pretrain import pretrain_bundle
    from mmalign.schemas import TrainConfig

    t0 = time.perf_counter()
    catalog = write_pool(args.pool, args.out, args.n, args.originals)
    print(f"pool with colours: {catalog} ({time.perf_counter() - t0:.0f}s)", flush=True)
    bundle = args.out / "bundle"
    if not (bundle / "config.json").exists():
        cfg = TrainConfig(teacher_epochs=args.epochs)
        pretrain_bundle(catalog, bundle, features_dir=args.features, cfg=cfg, student_epochs=4, echo=print)
    # the shipped base (black glyphs) and the one with colours, zero-shot, against each catalog's own CCA
    common = ["--catalogs", *args.catalogs, "--seeds", *map(str, args.seeds), "--data", str(args.data)]
    return base_prior.main(["zero-shot", "--bases", "base", str(bundle), *common, "--features", args.features])


if __name__ == "__main__":
    raise SystemExit(main())
