"""Encoders on torch and on ONNX Runtime (fp32, int8): speed, agreement, held-out recall, ingest end to end.

    python -m benchmarks.runtimes                                  # tuxpaint: every table
    python -m benchmarks.runtimes --catalogs tuxpaint papirus      # agreement and recall on papirus too
    python -m benchmarks.runtimes --skip-ingest --rounds 5

Per encoder (efficientnet-lite0, minilm-l6) and runtime (torch fp32, onnx fp32, onnx int8):

- **speed**: items/s at batch 1, 16 and 64 on the same inputs (the first catalog's first 64 images, decoded
  and letterboxed beforehand; its first 64 texts), in ``--rounds`` interleaved rounds (each round runs every
  runtime once, in turn), so that a load from other processes falls on all of them alike. Printed: the median
  over rounds, and the median over rounds of each runtime's ratio to torch in the same round. The box's load
  average is printed with the table: absolute figures hold for that load only, the ratios are what compare.
- **agreement**: the per-item cosine between each runtime's features and torch's, over every item of each
  catalog (min, mean, and the worst item).
- **recall**: held-out recall@10 (text -> image and image -> text) of CCA fitted on the torch features of each
  seed's training split (its ridge chosen on the validation split), evaluated on the test split with torch
  features, and with the runtime's features for that encoder (the other modality on torch): a bundle trained
  on torch features used with ONNX features. Mean over seeds and the largest per-seed |difference|.
- **ingest**: ``ingest`` of the first catalog (image + text) end to end on fresh media (an empty feature cache
  and store each time; the ONNX export already made, as after first use) with ``runtime=torch`` and with
  ``runtime=onnx`` (each encoder at its spec's ``onnx_precision``), interleaved over ``--ingest-rounds``.

Features go through the feature cache (``--features``), so a rerun encodes nothing for agreement and recall.
An int8 export whose agreement does not hold is still built here (and marked "no") to report its figures;
``mmalign`` itself refuses it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

ENCODERS = ("efficientnet-lite0", "minilm-l6")
VARIANTS = (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"))
BATCHES = (1, 16, 64)
SPEED_ITEMS = 64


def variant_spec(name: str, runtime: str, precision: str):
    from mmalign.plugin.encoders.registry import get_encoder_spec
    from mmalign.plugin.encoders.runtime import with_runtime

    return with_runtime(get_encoder_spec(name), runtime, precision=precision if runtime == "onnx" else None)


def build_variant(spec, export_root: Path):
    """The encoder of ``spec`` (an ONNX export is built even where its agreement does not hold)."""
    from mmalign.plugin.encoders import build_encoder

    if spec.runtime == "onnx":
        from mmalign.plugin.encoders.onnx_runtime import encoder_class

        return encoder_class(spec)(spec, device="cpu", export_root=export_root, require_agreement=False)
    return build_encoder(spec, device="cpu")


def label(spec) -> str:
    return f"{spec.runtime} {spec.precision}"


# -- speed -----------------------------------------------------------------------------------------------
def speed_table(name: str, encoders: dict, inputs: list, rounds: int) -> None:
    rates: dict[tuple[str, int], list[float]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    for size in BATCHES:
        batch_inputs = inputs[: max(size, 16)] if size == 1 else inputs
        for enc in encoders.values():  # warm: first runs allocate
            enc.encode(batch_inputs[:size], batch_size=size)
        for _ in range(rounds):
            this_round = {}
            for key, enc in encoders.items():
                t0 = time.perf_counter()
                enc.encode(batch_inputs, batch_size=size)
                this_round[key] = len(batch_inputs) / (time.perf_counter() - t0)
                rates.setdefault((key, size), []).append(this_round[key])
            for key in encoders:
                ratios.setdefault((key, size), []).append(this_round[key] / this_round["torch fp32"])
    print(f"\n{name}: items/s (median of {rounds} interleaved rounds) and ratio to torch fp32 (median per round)")
    print(f"{'runtime':<14}" + "".join(f"{'batch ' + str(s):>12}{'x torch':>9}" for s in BATCHES))
    for key in encoders:
        cells = "".join(
            f"{statistics.median(rates[(key, s)]):>12.1f}{statistics.median(ratios[(key, s)]):>8.2f}x" for s in BATCHES
        )
        print(f"{key:<14}{cells}")


def speed_inputs(name: str, encoder, catalog) -> list:
    items = catalog.items()
    if encoder.modality.value == "text":
        return [i.text for i in items if i.text][:SPEED_ITEMS]
    from mmalign.schemas import Modality

    paths = [(i.id, catalog.resolve(i, Modality.IMAGE)) for i in items if i.image][:SPEED_ITEMS]
    return [encoder.load_input(path, item_id) for item_id, path in paths]


# -- agreement and recall --------------------------------------------------------------------------------
def catalog_tables(label_: str, catalog, specs_by_encoder: dict, features: Path, seeds: list[int]) -> None:
    from mmalign.plugin.align.fit import choose_cca, evaluate_models
    from mmalign.plugin.encoders.onnx_runtime import agreement_table
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.features.extract import extract_features
    from mmalign.plugin.features.paired import PairedFeatures, load_paired, split_items
    from mmalign.schemas import TrainConfig

    cache = FeatureCache(features)
    items = [i for i in catalog.items() if i.text and i.image]
    ids = [i.id for i in items]
    for specs in specs_by_encoder.values():
        for spec in specs.values():
            build = partial(_build_for_cache, export_root=features / "onnx")
            extract_features(catalog, features, specs={spec.modality: spec}, items=items, build_encoder=build)
    torch_specs = {spec.modality: spec for specs in specs_by_encoder.values() for spec in [specs["torch fp32"]]}
    for specs in specs_by_encoder.values():  # items that every runtime could encode (a decode may time out)
        for spec in specs.values():
            have = set(cache.load(spec.modality, spec, ids).item_ids)
            ids = [i for i in ids if i in have]
    reference = load_paired(cache, torch_specs, ids)
    print(f"\n{label_}: {len(reference)} items with image and text that every runtime encoded")
    print(f"{'encoder':<20}{'runtime':<12}{'items':>7}{'cos min':>10}{'cos mean':>10}{'holds':>7}  worst item")
    swapped: dict[tuple[str, str], PairedFeatures] = {}
    for name, specs in specs_by_encoder.items():
        torch_spec = specs["torch fp32"]
        modality = torch_spec.modality
        for key, spec in specs.items():
            if key == "torch fp32":
                continue
            table = load_paired(cache, {modality: spec}, reference.item_ids)
            row = agreement_table(reference.features[modality], table.features[modality], reference.item_ids)
            holds = "yes" if row["min_cosine"] >= 0.99 else "no"
            print(
                f"{name:<20}{key:<12}{row['items']:>7}{row['min_cosine']:>10.4f}{row['mean_cosine']:>10.4f}"
                f"{holds:>7}  {row['worst']}"
            )
            features_ = dict(reference.features)
            features_[modality] = table.features[modality]
            swapped[(name, key)] = PairedFeatures(reference.item_ids, features_, dict(reference.masks))
    recalls: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:
        cfg = TrainConfig(seed=seed)
        train_ids, val_ids, test_ids = split_items(reference.item_ids, cfg.test_fraction, cfg.val_fraction, seed)
        _, _, model = choose_cca(reference.select(train_ids), reference.select(val_ids), cfg, cfg.rank, lambda _: 0)
        tests = {"torch fp32 (both)": reference.select(test_ids)}
        tests |= {f"{name} on {key}": data.select(test_ids) for (name, key), data in swapped.items()}
        for test_label, data in tests.items():
            rows = evaluate_models({"cca": model}, data, [])
            recall = {f"{r['query']}->{r['target']}": r["recall@10"] for r in rows if r["target"] != "fused"}
            recalls.setdefault(test_label, []).append(recall)
    pairs = [p for p in recalls["torch fp32 (both)"][0] if p in ("text->image", "image->text")]
    print(
        f"held-out recall@10 of CCA (rank {TrainConfig().rank}) fitted on torch features, mean over seeds {seeds}, "
        f"and the largest per-seed |difference| from torch"
    )
    print(f"{'features':<34}" + "".join(f"{p:>14}{'max |diff|':>12}" for p in pairs))
    base = recalls["torch fp32 (both)"]
    for test_label, rows in recalls.items():
        cells = ""
        for p in pairs:
            values = [r[p] for r in rows]
            diffs = [abs(r[p] - b[p]) for r, b in zip(rows, base)]
            cells += f"{np.mean(values):>14.4f}{max(diffs):>12.4f}"
        print(f"{test_label:<34}{cells}")


def _build_for_cache(spec, device="cpu", export_root=None):
    return build_variant(spec, export_root)


# -- ingest end to end -----------------------------------------------------------------------------------
def ingest_table(catalog, features: Path, rounds: int) -> None:
    from mmalign.plugin.encoders.registry import register_preset
    from mmalign.plugin.features.extract import preset_specs
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.workflows.train import train_bundle
    from mmalign.schemas import StoreConfig, TrainConfig

    register_preset({"name": "bench-image-text", "image": "efficientnet-lite0", "text": "minilm-l6"}, replace=True)
    work = Path(tempfile.mkdtemp(prefix="mmalign-bench-runtimes-"))
    try:
        bundle = work / "bundle"
        cfg = TrainConfig(teacher_epochs=2, epochs=2)
        train_bundle(
            catalog, bundle, preset="bench-image-text", features_dir=features, cfg=cfg, runtime="torch", echo=str
        )
        onnx_specs = preset_specs("bench-image-text", runtime="onnx")
        exports = features / "onnx"
        for spec in onnx_specs.values():  # made once (first use), as a user's would be
            build_variant(spec, exports)
        seconds: dict[str, list[float]] = {}
        stages: dict[str, dict[str, list[float]]] = {}
        for number in range(rounds):
            for runtime in ("torch", "onnx"):
                fresh = work / f"features-{runtime}-{number}"
                if runtime == "onnx":
                    shutil.copytree(exports, fresh / "onnx")
                t0 = time.perf_counter()
                report = ingest(
                    catalog,
                    bundle=bundle,
                    collection=f"bench_{runtime}_{number}",
                    store=StoreConfig(path=str(work / f"store-{runtime}-{number}")),
                    features_dir=fresh,
                    device="cpu",
                    runtime=runtime,
                )
                seconds.setdefault(runtime, []).append(time.perf_counter() - t0)
                for stage, timing in report.stages.items():
                    stages.setdefault(runtime, {}).setdefault(stage, []).append(timing.seconds)
                took = seconds[runtime][-1]
                print(f"  ingest {runtime} round {number}: {report.ok} points, {took:.1f} s", flush=True)
        print(
            f"\ningest end to end ({len(catalog.items())} items, image + text, fresh media; "
            f"onnx: {', '.join(f'{s.name} {s.precision}' for s in onnx_specs.values())})"
        )
        names = list(stages["torch"])
        print(f"{'runtime':<10}{'seconds':>10}{'items/s':>10}" + "".join(f"{n + ' s':>14}" for n in names))
        count = len(catalog.items())
        for runtime, values in seconds.items():
            median = statistics.median(values)
            cells = "".join(f"{statistics.median(stages[runtime][n]):>14.1f}" for n in names)
            print(f"{runtime:<10}{median:>10.1f}{count / median:>10.1f}{cells}")
        per_round = [t / o for t, o in zip(seconds["torch"], seconds["onnx"])]
        print(f"onnx speed-up over torch, per round: {', '.join(f'{r:.2f}x' for r in per_round)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    from benchmarks.alignment import build_catalog

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalogs", nargs="+", default=["tuxpaint"], choices=["tuxpaint", "papirus", "wesnoth"])
    parser.add_argument("--data", type=Path, default=Path("mmalign-data/bench"), help="catalogs are written here")
    parser.add_argument("--features", type=Path, default=Path("mmalign-data/bench/features-runtimes"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    parser.add_argument("--ingest-rounds", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args(argv)

    from mmalign.connectors.sources import open_catalog

    args.data.mkdir(parents=True, exist_ok=True)
    catalogs = {}
    for name in args.catalogs:
        built = build_catalog(name, args.data)
        if isinstance(built, str):
            print(f"skipping {name}: {built}")
            continue
        catalogs[name] = open_catalog(built[0], media_root=built[1])
    if not catalogs:
        return 1
    print(
        f"cpus: {len(os.sched_getaffinity(0))}; load average at start: "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} (other processes share these cores)"
    )
    exports = args.features / "onnx"
    specs_by_encoder = {
        name: {label(s): s for s in (variant_spec(name, r, p) for r, p in VARIANTS)} for name in ENCODERS
    }
    for name, specs in specs_by_encoder.items():
        for key, spec in specs.items():
            if spec.runtime == "onnx":
                t0 = time.perf_counter()
                encoder = build_variant(spec, exports)
                meta = encoder.meta
                kept = meta.get("int8", {}).get("kept_fp32")
                note = ""
                if kept is not None:
                    note = f"; int8: {meta['int8']['quantized_nodes']} nodes quantized, {len(kept)} kept fp32"
                print(
                    f"export {name} {key}: probes cos min {meta['agreement']['min_cosine']:.4f} "
                    f"(made in {meta['export_seconds']:.0f} s; loaded in {time.perf_counter() - t0:.1f} s){note}"
                )
    first = next(iter(catalogs.values()))
    if not args.skip_speed:
        for name, specs in specs_by_encoder.items():
            encoders = {key: build_variant(spec, exports) for key, spec in specs.items()}
            inputs = speed_inputs(name, encoders["torch fp32"], first)
            speed_table(name, encoders, inputs, args.rounds)
            del encoders
    for name, catalog in catalogs.items():
        catalog_tables(name, catalog, specs_by_encoder, args.features, args.seeds)
    if not args.skip_ingest:
        ingest_table(first, args.features, args.ingest_rounds)
    print(f"load average at end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
