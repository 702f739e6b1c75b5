"""Bigger EfficientNet-Lite image encoders (with the same label part) against the default, chosen on validation.

    python -m benchmarks.image_encoders                                   # tuxpaint, wesnoth, papirus; seeds 0-4
    python -m benchmarks.image_encoders --catalogs tuxpaint wesnoth --data /work/mmalign-data/benchmarks \\
        --features /work/mmalign-data/features

For each benchmark catalog (built as ``benchmarks.alignment`` builds them; one whose Debian package is missing is
skipped, saying why) and each image encoder of ``--encoders`` (default: efficientnet-lite0-labels, the default
preset's, then -lite1-labels and -lite2-labels), with the default preset's text encoder (minilm-l6): the catalog's
features go through the feature cache (``--features``; only the first run encodes, with a progress line at least
every 10 s), then per seed, on the project's split (``split_for_training`` with ``TrainConfig(seed=s)``):

- the catalog's CCA (rank and ridges of ``TrainConfig``; the ridge chosen on the validation split, as training
  does: ``choose_cca``) fitted on the training split, scored on the **validation** split: the primary metric that
  training selects on (mean of recall@1/5/10) and text→image / image→text recall@10. Decisions use these only;
- the same fits on the **test** split (text→image / image→text recall@10), printed to report, not to choose;
- the label part alone, no pairs (as ``benchmarks.labelled_images zero-shot``): each text's vector against each
  image's label part, both centred on the training items' means, recall@10 on the validation split (mean of both
  directions; chance is 10 / queries);

mean ± std over seeds, and each encoder's per-seed difference to the first one's validation primary metric.
Then the cost of encoding: seconds per image of ``encoder.encode`` on one batch of 32 images of the first
catalog (decoded and letterboxed beforehand: decoding is left out), one thread (torch, and ONNX Runtime fp32
where the ``onnx`` extra is installed), after one warm-up batch; ``--cost-rounds`` rounds, each running every
encoder in turn, so that load from other processes falls on all alike; the median over rounds, with the load
average (the absolute figures hold for that load only).

Features are computed on ``--runtime`` (default torch: the runtime the default encoder's benchmark features were
cached on; ONNX Runtime fp32 gives the same features, per-item cosine ≥ 0.99 checked at export).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ENCODERS = ("efficientnet-lite0-labels", "efficientnet-lite1-labels", "efficientnet-lite2-labels")
CATALOGS = ("tuxpaint", "wesnoth", "papirus")
COST_BATCH = 32
#: (query, target) pairs of the recall@10 columns.
PAIRS = (("text", "image"), ("image", "text"))


def _quiet(line: str) -> None:
    pass


def catalog_data(catalog, specs: dict, features: str):
    """The catalog's paired image and text features under ``specs`` (encoded first where the cache lacks them)."""
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.features.extract import extract_features
    from mmalign.plugin.features.paired import load_paired

    extract_features(catalog, features, specs=specs, show_progress=True)
    return load_paired(FeatureCache(features), specs, [i.id for i in catalog.items()])


def specs_of(image_encoder: str, runtime: str) -> dict:
    """Image encoder ``image_encoder`` and the default preset's text encoder, on ``runtime``."""
    from mmalign.plugin.encoders.registry import DEFAULT_PRESET, get_encoder_spec, get_preset
    from mmalign.plugin.encoders.runtime import with_runtime
    from mmalign.schemas import Modality

    text = get_preset(DEFAULT_PRESET).text
    return {
        Modality.IMAGE: with_runtime(get_encoder_spec(image_encoder), runtime, "cpu"),
        Modality.TEXT: with_runtime(get_encoder_spec(text), runtime, "cpu"),
    }


def recall10(rows: list[dict]) -> dict[str, float]:
    """``text→image`` and ``image→text`` recall@10 of :func:`evaluate_embedder`'s rows."""
    return {f"{q}→{t}": r["recall@10"] for r in rows for q, t in PAIRS if (r["query"], r["target"]) == (q, t)}


def score_seed(data, seed: int, label_start: int) -> dict[str, float]:
    """One seed's validation and test figures of the catalog's CCA, and the label part's zero-shot recall (the
    encoder's own label columns, from ``label_start``)."""
    from benchmarks.labelled_images import zero_shot_recall
    from mmalign.plugin.align.evaluation import evaluate_embedder, primary_metric
    from mmalign.plugin.align.fit import choose_cca, split_for_training
    from mmalign.plugin.align.trainer import TorchEmbedder
    from mmalign.schemas import Modality, TrainConfig

    cfg = TrainConfig(seed=seed)
    train, val, test, _ = split_for_training(data, cfg, _quiet)
    reg, _, cca = choose_cca(train, val, cfg, cfg.rank, _quiet)
    embedder = TorchEmbedder(cca, "cca")
    val_rows = evaluate_embedder("cca", embedder, val, with_fused=False)
    test_rows = evaluate_embedder("cca", embedder, test, with_fused=False)
    out = {"val primary": primary_metric(val_rows), "reg": reg}
    out.update({f"val {k} R@10": v for k, v in recall10(val_rows).items()})
    out.update({f"test {k} R@10": v for k, v in recall10(test_rows).items()})
    out["val zero-shot R@10"] = zero_shot_recall(train, val, lambda image: image[:, label_start:])
    out["val queries"] = int((val.masks[Modality.IMAGE] & val.masks[Modality.TEXT]).sum())
    return out


def _cell(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


COLUMNS = (
    "val primary",
    "val text→image R@10",
    "val image→text R@10",
    "test text→image R@10",
    "test image→text R@10",
    "val zero-shot R@10",
)


def print_table(scores: dict, encoders: list[str], seeds: list[int]) -> None:
    """Markdown: one row per catalog and encoder, mean ± std over seeds, and the per-seed difference of the
    validation primary metric to the first encoder's."""
    print(f"\nCCA (rank {_rank()}) per catalog and image encoder, text minilm-l6; mean ± std over seeds {seeds}")
    print("| catalog | image encoder | " + " | ".join(COLUMNS) + " | val primary − " + encoders[0] + " |")
    print("|---|---|" + "---:|" * (len(COLUMNS) + 1))
    for (catalog, encoder), per_seed in scores.items():
        cells = [_cell([s[c] for s in per_seed]) for c in COLUMNS]
        first = scores.get((catalog, encoders[0]))
        diff = "-"
        if encoder != encoders[0] and first is not None:
            d = np.array([s["val primary"] for s in per_seed]) - np.array([s["val primary"] for s in first])
            diff = f"{d.mean():+.3f} ± {d.std():.3f}"
        print(f"| {catalog} | {encoder} | " + " | ".join(cells) + f" | {diff} |")
    print(
        "\nzero-shot chance (10 / validation queries): "
        + ", ".join(
            f"{c} {min(1.0, 10 / per_seed[0]['val queries']):.3f}"
            for (c, e), per_seed in scores.items()
            if e == encoders[0]
        )
    )


def _rank() -> int:
    from mmalign.schemas import TrainConfig

    return TrainConfig().rank


def cost_table(catalog, encoders: list[str], rounds: int, runtimes: list[str], export_root: Path) -> None:
    """Seconds per image of ``encode`` on one batch of ``COST_BATCH`` images, one thread, after a warm-up batch;
    the median over ``rounds`` interleaved rounds."""
    import torch

    from mmalign.plugin.encoders import build_encoder
    from mmalign.schemas import Modality

    os.environ["MMALIGN_ONNX_THREADS"] = "1"
    torch.set_num_threads(1)
    built, inputs = {}, {}
    paths = [(i.id, catalog.resolve(i, Modality.IMAGE)) for i in catalog.items() if i.image][:COST_BATCH]
    for encoder in encoders:
        for runtime in runtimes:
            spec = specs_of(encoder, runtime)[Modality.IMAGE]
            enc = build_encoder(spec, device="cpu", export_dir=export_root)
            built[(encoder, runtime)] = enc
            inputs[(encoder, runtime)] = [enc.load_input(path, item_id) for item_id, path in paths]
            enc.encode(inputs[(encoder, runtime)], batch_size=COST_BATCH)  # warm-up
    seconds: dict[tuple[str, str], list[float]] = {}
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        for key, enc in built.items():
            t0 = time.perf_counter()
            enc.encode(inputs[key], batch_size=COST_BATCH)
            seconds.setdefault(key, []).append((time.perf_counter() - t0) / len(inputs[key]))
        load.append(os.getloadavg()[0])
    print(
        f"\nencode cost, s/image (batch of {len(paths)}, 1 thread, decoded beforehand; median of {rounds} interleaved "
        f"rounds; load average {min(load):.1f}-{max(load):.1f})"
    )
    print("| image encoder | " + " | ".join(f"{r} fp32 s/image | × {encoders[0]}" for r in runtimes) + " |")
    print("|---|" + "---:|---:|" * len(runtimes))
    for encoder in encoders:
        cells = []
        for runtime in runtimes:
            value = statistics.median(seconds[(encoder, runtime)])
            ratios = [a / b for a, b in zip(seconds[(encoder, runtime)], seconds[(encoders[0], runtime)])]
            cells.append(f"{value:.4f} | {statistics.median(ratios):.2f}")
        print(f"| {encoder} | " + " | ".join(cells) + " |")
    print(json.dumps({"cost_s_per_image": {f"{e} {r}": v for (e, r), v in seconds.items()}}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalogs", nargs="+", default=list(CATALOGS))
    parser.add_argument(
        "--encoders", nargs="+", default=list(ENCODERS), help="image encoders; the first is the reference"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--data", type=Path, default=Path("mmalign-data/benchmarks"), help="where catalogs are written")
    parser.add_argument("--features", default="mmalign-data/features")
    parser.add_argument("--runtime", default="torch", choices=["torch", "onnx", "auto"], help="of the feature pass")
    parser.add_argument("--cost-rounds", type=int, default=5, help="rounds of the encode cost (0: skip it)")
    parser.add_argument(
        "--cost-runtimes", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"], help="of the encode cost"
    )
    args = parser.parse_args(argv)
    import torch

    from benchmarks.alignment import build_catalog
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.encoders.onnx_runtime import export_dir
    from mmalign.plugin.encoders.registry import get_encoder_spec
    from mmalign.plugin.encoders.runtime import onnx_available

    torch.set_num_threads(1)
    for name in args.encoders:
        spec = get_encoder_spec(name)
        if spec.kind != "labelled_image":
            parser.error(f"--encoders: {name!r} is a {spec.kind} encoder; this compares labelled_image encoders")
    args.data.mkdir(parents=True, exist_ok=True)
    catalogs = {}
    for name in args.catalogs:
        built = build_catalog(name, args.data)
        if isinstance(built, str):
            print(f"{name}: skipped: {built}", file=sys.stderr)
            continue
        catalogs[name] = open_catalog(built[0], media_root=built[1])
    if not catalogs:
        return 1
    scores: dict[tuple[str, str], list[dict]] = {}
    for name, catalog in catalogs.items():
        for encoder in args.encoders:
            t0 = time.perf_counter()
            specs = specs_of(encoder, args.runtime)
            data = catalog_data(catalog, specs, args.features)
            label_start = get_encoder_spec(encoder).backbone.dim
            print(f"{name} {encoder}: {len(data)} items, features in {time.perf_counter() - t0:.0f} s", flush=True)
            for seed in args.seeds:
                row = score_seed(data, seed, label_start)
                scores.setdefault((name, encoder), []).append(row)
                print(json.dumps({"catalog": name, "encoder": encoder, "seed": seed, **row}), flush=True)
        print_table(scores, args.encoders, args.seeds)
    if args.cost_rounds > 0:
        runtimes = [r for r in args.cost_runtimes if r == "torch" or onnx_available()]
        first = next(iter(catalogs.values()))
        cost_table(first, args.encoders, args.cost_rounds, runtimes, export_dir(args.features))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
