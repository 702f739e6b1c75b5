"""Is the shipped base bundle a useful prior for a catalog? Two measurements (issue #21).

    python -m benchmarks.base_prior few-pairs  [--catalogs wesnoth tuxpaint] [--seeds 0 1 2] [--pairs 20 50 100 200]
    python -m benchmarks.base_prior adapt      [--catalogs wesnoth tuxpaint] [--seeds 0 1]
    python -m benchmarks.base_prior zero-shot  --bases base OTHER_BASE [--catalogs ...] [--seeds ...]

``few-pairs``: with only N of the catalog's training pairs, the catalog's CCA on those N, against the teacher
fine-tuned from the base on them (modes ``all`` and ``hidden``), the teacher from scratch, and the base
zero-shot (centred on the features of all training items: no pairs needed). ``adapt``: the base zero-shot
with the catalog's features adapted without pairs: centred (what ``recentre`` does), per-dimension scaled to
the pool's spread, and CORAL (whitened, re-coloured with the pool's within-source covariance). Test: each
seed's split of :class:`~mmalign.schemas.TrainConfig`; recall@10, the mean of text→image and image→text.
Catalogs and features as ``benchmarks.alignment`` builds them; the pool's cached features for ``adapt``
(``mmalign pretrain --build``, then its feature pass).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np

PAIRS = (("text", "image"), ("image", "text"))


def _catalog_data(name: str, args, base, extract: bool = False):
    """The catalog's paired features under ``base``'s encoders (``extract``: encode what is not cached)."""
    from benchmarks.alignment import build_catalog
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.encoders.runtime import with_runtime
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.features.extract import extract_features
    from mmalign.plugin.features.paired import load_paired

    built = build_catalog(name, args.data)
    if isinstance(built, str):
        raise SystemExit(f"{name}: {built}")
    catalog = open_catalog(built[0], media_root=built[1])
    specs = {m: with_runtime(base.encoder_spec(m)) for m in base.modalities}  # $MMALIGN_RUNTIME, as ingest does
    if extract:
        extract_features(catalog, args.features, specs=specs)
    return load_paired(FeatureCache(args.features), specs, [i.id for i in catalog.items()])


def _recall(models: dict, test) -> dict[str, float]:
    from mmalign.plugin.align.fit import evaluate_models

    out: dict[str, list[float]] = {}
    for r in evaluate_models(models, test, []):
        if (r["query"], r["target"]) in PAIRS:
            out.setdefault(r["model"], []).append(r["recall@10"])
    return {k: float(np.mean(v)) for k, v in out.items()}


def few_pairs(args, base) -> dict:
    from mmalign.plugin.align.fit import choose_cca, fit_teacher, split_for_training
    from mmalign.plugin.align.pretrain import domain_mean, recentre
    from mmalign.schemas import TrainConfig

    rows: dict[tuple, list[float]] = {}
    for name in args.catalogs:
        data = _catalog_data(name, args, base)
        for seed in args.seeds:
            cfg = TrainConfig(seed=seed, teacher_epochs=args.teacher_epochs)
            train, val, test, _ = split_for_training(data, cfg, lambda line: None)
            order = np.random.default_rng(seed).permutation(len(train))
            for n in args.pairs:
                t0 = time.perf_counter()
                few = train.select([train.item_ids[i] for i in order[:n]])
                reg, _, cca = choose_cca(few, val, cfg, cfg.rank, lambda line: None)
                models = {
                    "cca": cca,
                    "base zero-shot, centred": recentre(copy.deepcopy(base.teacher), domain_mean(train)),
                }
                for mode in ("all", "hidden"):
                    models[f"teacher from base ({mode})"], _ = fit_teacher(few, val, cfg, reg, None, base, mode)
                models["teacher from scratch"], _ = fit_teacher(few, val, cfg, reg, None, None, "all")
                for model, value in _recall(models, test).items():
                    rows.setdefault((name, n, model), []).append(value)
                print(f"  {name} seed {seed} n={n} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return rows


def adapt(args, base) -> dict:
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.align.fit import split_for_training
    from mmalign.plugin.align.pretrain import centre_by_source, domain_mean, recentre
    from mmalign.plugin.features.paired import PairedFeatures
    from mmalign.plugin.workflows.pretrain import pool_pairs
    from mmalign.schemas import TrainConfig

    specs = {m: base.encoder_spec(m) for m in base.modalities}
    pool = open_catalog(args.pool)
    pool_data, sources, _ = pool_pairs(pool.items(), args.features, specs)
    centred, pool_mean = centre_by_source(pool_data, sources)
    pool_cov = {m: _cov(centred.features[m][centred.masks[m]]) for m in base.modalities}
    rows: dict[tuple, list[float]] = {}
    for name in args.catalogs:
        data = _catalog_data(name, args, base)
        for seed in args.seeds:
            train, _, test, _ = split_for_training(data, TrainConfig(seed=seed), lambda line: None)
            mean = domain_mean(train)
            feats = {m: train.features[m][train.masks[m]] for m in base.modalities}
            maps = {
                "scaled": {m: np.diag(np.sqrt(np.diag(pool_cov[m])) / (f.std(0) + 1e-6)) for m, f in feats.items()},
                "coral": {m: _msqrt(_cov(f), -0.5) @ _msqrt(pool_cov[m], 0.5) for m, f in feats.items()},
            }
            results = {"centred": _recall({"base": recentre(copy.deepcopy(base.teacher), mean)}, test)["base"]}
            at_pool = recentre(copy.deepcopy(base.teacher), pool_mean)
            for variant, linear in maps.items():
                moved = {
                    m: ((f - mean[m]) @ linear[m] + pool_mean[m]).astype(np.float32) if m in linear else f
                    for m, f in test.features.items()
                }
                adapted = PairedFeatures(test.item_ids, moved, dict(test.masks), dict(test.encoder_ids))
                results[variant] = _recall({"base": at_pool}, adapted)["base"]
            for variant, value in results.items():
                rows.setdefault((name, len(test), variant), []).append(value)
            print(f"  {name} seed {seed}: {results}", flush=True)
    return rows


def zero_shot(args, _base) -> dict:
    """Each of ``--bases`` zero-shot (teacher, centred on the catalog's training items) against the
    catalog's own CCA under the same encoders; the catalogs' features are extracted as needed."""
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.align.fit import choose_cca, split_for_training
    from mmalign.plugin.align.pretrain import domain_mean, recentre
    from mmalign.schemas import TrainConfig

    rows: dict[tuple, list[float]] = {}
    for path in args.bases:
        base = load_bundle(path)
        label = f"{path} ({base.config.pool.n_pairs if base.config.pool else '?'} pool pairs)"
        for name in args.catalogs:
            data = _catalog_data(name, args, base, extract=True)
            for seed in args.seeds:
                cfg = TrainConfig(seed=seed)
                train, val, test, _ = split_for_training(data, cfg, lambda line: None)
                _, _, cca = choose_cca(train, val, cfg, cfg.rank, lambda line: None)
                models = {"base": recentre(copy.deepcopy(base.teacher), domain_mean(train)), "cca": cca}
                for model, value in _recall(models, test).items():
                    key = f"{label}, zero-shot teacher centred" if model == "base" else f"{label}: own cca"
                    rows.setdefault((name, len(test), key), []).append(value)
                print(f"  {label} {name} seed {seed}", flush=True)
    return rows


def _cov(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    return x.T @ x / (len(x) - 1)


def _msqrt(c: np.ndarray, power: float, eps: float = 0.1) -> np.ndarray:
    """``c`` to ``power`` (±0.5), its eigenvalues raised by ``eps`` times their mean (a ridge)."""
    vals, vecs = np.linalg.eigh(c)
    vals = np.clip(vals, 0, None) + eps * vals.mean()
    return (vecs * vals**power) @ vecs.T


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("few-pairs", "adapt", "zero-shot"))
    parser.add_argument("--bases", nargs="+", default=["base"], help="base bundles (zero-shot)")
    parser.add_argument("--catalogs", nargs="+", default=["wesnoth", "tuxpaint"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs", type=int, nargs="+", default=[20, 50, 100, 200])
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--data", type=Path, default=Path("mmalign-data/benchmarks"))
    parser.add_argument("--features", default="mmalign-data/features")
    parser.add_argument("--pool", default="mmalign-data/pool/pool.jsonl", help="the pool catalog (adapt)")
    parser.add_argument("--base", default="base")
    args = parser.parse_args(argv)
    import torch

    from mmalign.plugin.align.bundle import load_bundle

    torch.set_num_threads(1)
    base = load_bundle(args.base)
    rows = {"few-pairs": few_pairs, "adapt": adapt, "zero-shot": zero_shot}[args.command](args, base)
    key = "pairs" if args.command == "few-pairs" else "test items"
    print(f"\nrecall@10, mean of text→image and image→text; mean ± std over seeds {args.seeds}")
    print(f"| catalog | {key} | model | recall@10 |\n|---|---|---|---|")
    for (name, n, model), values in rows.items():
        print(f"| {name} | {n} | {model} | {np.mean(values):.3f} ± {np.std(values):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
