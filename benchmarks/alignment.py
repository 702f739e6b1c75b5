"""Alignment quality over several seeds, on one catalog or on the benchmark catalogs.

    python -m benchmarks.alignment                      # tuxpaint, papirus and wesnoth, seeds 0-4
    python -m benchmarks.alignment CATALOG --media-root DIR [--features DIR] [--seeds 0 1 2 3 4]

Without a catalog it builds the benchmark catalogs from their Debian packages
(``tuxpaint-stamps-default``: 950 stamps, image + text + some sounds; ``papirus-icon-theme``:
5,785 icons, image + text; ``wesnoth-1.16-data``: 566 units, terrains and scenery items, image +
text) under ``--data`` and skips, saying why, one whose package is missing. Features go through
the feature cache, so only the first run encodes media.

Per seed (the seed sets the split and training): svd and cca at rank 64, the teacher and the
student from scratch (and the student variants of ``VARIANTS`` asked for), then with the base
bundle (``--base``, default the shipped one; none of these catalogs is in its pool): the base
zero-shot (as shipped, and centred on the catalog's training items), the teacher fine-tuned from the
base (``--base-modes``: all, hidden) with its student, and the from-base student variants of
``BASE_VARIANTS``; models in ``CSLS_MODELS`` are also scored with query-side hubness correction (bank:
the training items), and the CSLS − plain difference on the validation split is printed, which is
what decides whether to keep it. Everything in the tables is on the held-out test split. Printed per
catalog: recall@10 and MRR (mean ± std over seeds) with parameter counts, the per-seed differences
to cca, student/teacher retention and the training times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mmalign.plugin.align.pretrain import BASE_MODES, DEFAULT_BASE_MODE

#: Student variants distilled from each seed's teacher: name -> TrainConfig fields over the defaults.
#: ``student`` is TrainConfig's default (rank 64, distilled on single-modality inputs too).
VARIANTS: dict[str, dict] = {
    "student": {},
    "student r64 pairs only": {"unpaired_cosine": 0.0, "unpaired_relational": 0.0},
    "student r32 (before #13)": {"rank": 32, "unpaired_cosine": 0.0, "unpaired_relational": 0.0},
    "student r32 no distill": {"rank": 32, "distill": False},
    "student r32 + unpaired": {"rank": 32},
    "student r32 + MLP48 + unpaired": {"rank": 32, "student_hidden": 48},
}
#: Closed-form CCA is also fitted at this rank (the size of the student before #13).
BASE_RANK = 32
PAIRS = (("text", "image"), ("image", "text"), ("audio", "image"), ("audio", "text"))
FUSED = (("text", "fused"), ("image", "fused"))
CATALOGS = ("tuxpaint", "papirus", "wesnoth")


def build_catalog(name: str, data_dir: Path) -> tuple[Path, Path] | str:
    """(catalog file, media root) of a benchmark catalog, or why it cannot be built here."""
    from mmalign.connectors.errors import SourceError

    if name == "tuxpaint":
        from mmalign.connectors.datasets.tuxpaint import INSTALL_HINT, write_catalog
    elif name == "papirus":
        from mmalign.connectors.datasets.papirus import INSTALL_HINT, write_catalog
    elif name == "wesnoth":
        from mmalign.connectors.datasets.wesnoth import INSTALL_HINT, write_catalog
    else:
        return f"unknown catalog {name!r}; known: {list(CATALOGS)}"
    out = data_dir / f"{name}.jsonl"
    try:
        root, items = write_catalog(out)
    except SourceError as exc:
        return f"{exc} (install: {INSTALL_HINT})"
    return out, root


#: Student variants distilled from each seed's teacher fine-tuned from the base bundle.
BASE_VARIANTS: dict[str, dict] = {
    "student from base + neighbourhood 0.5": {"neighbourhood": 0.5},
    "student from base + mixup 0.5": {"unpaired_mixup": 0.5},
}
#: Models that are also scored with query-side hubness correction (CSLS, bank: the training items).
CSLS_MODELS = (
    "cca r64",
    "teacher",
    "student",
    "base zero-shot teacher, centred",
    "teacher from base (hidden)",
    "student from base (hidden)",
)


def run_catalog(label: str, catalog, media_root, args) -> None:
    import copy

    import torch

    from mmalign.plugin.align.evaluation import evaluate_embedder, primary_metric
    from mmalign.plugin.align.fit import choose_cca, evaluate_models, fit_alignment
    from mmalign.plugin.align.pretrain import domain_mean, recentre
    from mmalign.plugin.align.trainer import TorchEmbedder, train_student
    from mmalign.schemas import TrainConfig

    torch.set_num_threads(max(1, args.threads))
    data = benchmark_data(catalog, media_root, args.features, args.preset)
    present = list(data.modalities)
    base = _load_base(args.base)
    variants = {
        k: v for k, v in VARIANTS.items() if (args.variants is None and k == "student") or k in (args.variants or [])
    }
    base_variants = {k: v for k, v in BASE_VARIANTS.items() if args.base_variants is None or k in args.base_variants}
    rows: dict[tuple[str, str, str, str], list[float]] = {}
    params: dict[str, int] = {}
    seconds: dict[str, list[float]] = {}
    csls_val: dict[str, list[float]] = {}
    overrides = {
        k: v
        for k, v in (("teacher_epochs", args.teacher_epochs), ("epochs", args.epochs), ("dropout", args.dropout))
        if v is not None
    }
    for done, seed in enumerate(args.seeds):
        cfg = TrainConfig(seed=seed, **overrides)
        t0 = time.perf_counter()
        if args.zero_shot_only:  # svd and cca only: the base's zero-shot rows need no training
            result = _closed_form_only(data, cfg)
        else:
            result = fit_alignment(data, cfg, echo=lambda line: None)  # svd, cca, teacher, the default student
        summary = result.training_summary
        seconds.setdefault("svd + cca", []).append(summary["closed_form_seconds"])
        seconds.setdefault("teacher", []).append(summary["teacher"]["seconds"])
        seconds.setdefault("student", []).append(summary["student"]["seconds"])
        cca = f"cca r{cfg.rank}"
        closed = {f"svd r{cfg.rank}": (0, result.models["svd"]), cca: (cfg.rank, result.models["cca"])}
        inits = {cfg.rank: result.fits["cca"]}
        for rank in sorted({_rank(v, cfg) for v in variants.values()} - {cfg.rank}):
            _, inits[rank], model = choose_cca(result.train, result.val, cfg, rank, lambda line: None)
            closed[f"cca r{rank}"] = (rank, model)
        models = {name: model for name, (_, model) in sorted(closed.items(), key=lambda kv: kv[1][0])}
        if args.zero_shot_only:
            variants = {}
        else:
            models["teacher"] = result.models["teacher"]
        for name, fields in variants.items():
            if name == "student":
                models[name] = result.models["student"]
                continue
            vcfg = TrainConfig(seed=seed, **{**overrides, **fields})
            t1 = time.perf_counter()
            teacher = result.models["teacher"] if vcfg.distill else None
            models[name], _ = train_student(result.train, result.val, vcfg, inits[vcfg.rank], teacher)
            seconds.setdefault(name, []).append(time.perf_counter() - t1)
        if base is not None:
            mean = domain_mean(result.train)  # the catalog's training items only
            models["base zero-shot student"] = base.student
            models["base zero-shot teacher"] = base.teacher
            models["base zero-shot student, centred"] = recentre(copy.deepcopy(base.student), mean)
            models["base zero-shot teacher, centred"] = recentre(copy.deepcopy(base.teacher), mean)
        tuned: dict = {}  # base mode -> the fit started from the base
        if base is not None and not args.zero_shot_only:
            for mode in args.base_modes:
                t1 = time.perf_counter()
                tuned[mode] = fit_alignment(data, cfg, echo=lambda line: None, base=base, base_mode=mode)
                seconds.setdefault(f"from base ({mode}): svd + cca + teacher + student", []).append(
                    time.perf_counter() - t1
                )
                assert tuned[mode].split["test_ids"] == result.split["test_ids"]
                models[f"teacher from base ({mode})"] = tuned[mode].models["teacher"]
                models[f"student from base ({mode})"] = tuned[mode].models["student"]
            start = tuned.get(DEFAULT_BASE_MODE) or next(iter(tuned.values()), None)
            for name, fields in base_variants.items() if start is not None else ():
                vcfg = TrainConfig(seed=seed, **{**overrides, **fields})
                t1 = time.perf_counter()
                models[name], _ = train_student(
                    start.train, start.val, vcfg, start.fits["cca"], start.models["teacher"]
                )
                seconds.setdefault(name, []).append(time.perf_counter() - t1)
        for r in evaluate_models(models, result.test, []):
            for metric in ("recall@10", "mrr"):
                rows.setdefault((r["model"], r["query"], r["target"], metric), []).append(r[metric])
        for name in CSLS_MODELS:
            if name not in models:
                continue
            embedder = TorchEmbedder(models[name], name)
            plain = primary_metric(evaluate_embedder(name, embedder, result.val, with_fused=False))
            hub = primary_metric(
                evaluate_embedder(name, embedder, result.val, with_fused=False, hubness_bank=result.train)
            )
            csls_val.setdefault(name, []).append(hub - plain)
            for r in evaluate_embedder(name + " +CSLS", embedder, result.test, hubness_bank=result.train):
                for metric in ("recall@10", "mrr"):
                    rows.setdefault((r["model"], r["query"], r["target"], metric), []).append(r[metric])
        params = {name: model.n_parameters() for name, model in models.items() if model is not None}
        params.update({name + " +CSLS": params[name] for name in CSLS_MODELS if name in params})
        epochs = {"scratch": result.training_summary["teacher"].get("best_epoch")}
        for mode, fit in tuned.items():
            epochs[f"from base ({mode})"] = fit.training_summary["teacher"]["best_epoch"]
        best = ", ".join(f"{k} {v}" for k, v in epochs.items() if v is not None)
        print(f"  {label} seed {seed} done ({time.perf_counter() - t0:.0f}s; teacher best epoch: {best})", flush=True)

        _print_tables(
            label, data, present, result, cfg, base, rows, params, seconds, csls_val, cca, args, args.seeds[: done + 1]
        )


def benchmark_data(catalog, media_root, features, preset):
    """The catalog's paired features (encoded first where the cache lacks them: minutes, with progress), with
    only the modalities some item has."""
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.workflows.train import catalog_features

    catalog = open_catalog(catalog, media_root=media_root)
    _, _, _, data = catalog_features(catalog, features, preset, None, "auto", show_progress=True)
    present = list(data.modalities)
    data.features = {m: data.features[m] for m in present}
    data.masks = {m: data.masks[m] for m in present}
    return data


def _print_tables(label, data, present, result, cfg, base, rows, params, seconds, csls_val, cca, args, seeds) -> None:
    names = list(params)
    reference = params.get("teacher") or params.get("base zero-shot teacher") or 1
    pairs = [(q, t) for q, t in PAIRS if (cca, q, t, "mrr") in rows]
    n_test = len(result.test)
    print(
        f"\n{label}: {len(data)} items ({', '.join(f'{m.value} {int(data.masks[m].sum())}' for m in present)}), "
        f"{n_test} held out per seed; mean ± std over seeds {seeds}; D={cfg.dim}; "
        f"torch threads {args.threads}; base bundle: {base.bundle_id if base else 'none'}"
    )
    header = f"{'model':<40}{'params':>10}{'/teacher':>9}"
    header += "".join(f"{q[0] + '→' + t[0] + ' R@10':>16}" for q, t in pairs)
    header += "".join(f"{q[0] + '→' + t[0] + ' MRR':>16}" for q, t in pairs[:2])
    header += "".join(f"{q[0] + '→fused MRR':>16}" for q, _ in FUSED)
    print(header)
    for name in names:
        line = f"{name:<40}{params[name]:>10,}{100 * params[name] / reference:>8.1f}%"
        line += "".join(f"{_cell(rows.get((name, q, t, 'recall@10'))):>16}" for q, t in pairs)
        line += "".join(f"{_cell(rows.get((name, q, t, 'mrr'))):>16}" for q, t in pairs[:2])
        line += "".join(f"{_cell(rows.get((name, q, t, 'mrr'))):>16}" for q, t in FUSED)
        print(line)
    for name, model in (
        ("student", "teacher"),
        *((f"student from base ({mode})", f"teacher from base ({mode})") for mode in BASE_MODES),
    ):
        if name not in params:
            continue
        print(f"\n{name} − {cca}, per seed:")
        _diffs(rows, name, cca, pairs[:2])
        print(f"{name} / {model} (retention), mean over seeds:")
        for q, t in pairs[:2]:
            parts = []
            for metric in ("recall@10", "mrr"):
                ratio = np.array(rows[(name, q, t, metric)]) / np.array(rows[(model, q, t, metric)])
                parts.append(f"{metric} {ratio.mean():.3f}")
            print(f"  {q}→{t}: {', '.join(parts)}")
    for name in (
        *(f"teacher from base ({mode})" for mode in BASE_MODES),
        "base zero-shot student",
        "base zero-shot teacher, centred",
        "base zero-shot student, centred",
    ):
        if name in params:
            print(f"{name} − {cca}, per seed:")
            _diffs(rows, name, cca, pairs[:2])
    if csls_val:
        print(
            "CSLS − plain on the VALIDATION split (primary metric), mean over seeds: "
            + "; ".join(f"{k} {np.mean(v):+.3f}" for k, v in csls_val.items())
        )
    print("training time per seed, s (mean): " + "; ".join(f"{k} {np.mean(v):.0f}" for k, v in seconds.items()))


def _closed_form_only(data, cfg):
    """The split, svd and cca (ridge chosen on validation) of :func:`fit_alignment`, without the teacher."""
    import types

    from mmalign.plugin.align.closed_form import fit_svd
    from mmalign.plugin.align.fit import choose_cca
    from mmalign.plugin.align.student import build_student
    from mmalign.plugin.features.paired import split_items

    t0 = time.perf_counter()
    train_ids, val_ids, test_ids = split_items(data.item_ids, cfg.test_fraction, cfg.val_fraction, cfg.seed)
    train, val, test = data.select(train_ids), data.select(val_ids), data.select(test_ids)
    reg, fit, cca = choose_cca(train, val, cfg, cfg.rank, lambda line: None)
    svd = build_student(train.dims(), cfg, fit_svd(train, cfg.rank))
    return types.SimpleNamespace(
        models={"svd": svd, "cca": cca, "student": None},
        fits={"cca": fit},
        train=train,
        val=val,
        test=test,
        split={"test_ids": test_ids},
        training_summary={
            "closed_form_seconds": round(time.perf_counter() - t0, 1),
            "teacher": {"seconds": 0.0},
            "student": {"seconds": 0.0},
        },
    )


def _diffs(rows, name: str, baseline: str, pairs) -> None:
    for q, t in pairs:
        for metric in ("recall@10", "mrr"):
            diff = np.array(rows[(name, q, t, metric)]) - np.array(rows[(baseline, q, t, metric)])
            print(f"  {q}→{t} {metric:<9}: {np.round(diff, 3).tolist()}  mean {diff.mean():+.3f} ± {diff.std():.3f}")


def _load_base(name: str | None):
    """The base bundle (``base``: the shipped one), or None, saying why, when there is none."""
    if not name or name == "none":
        return None
    from mmalign.connectors.errors import BundleError
    from mmalign.plugin.align.bundle import load_bundle

    try:
        return load_bundle(name)
    except BundleError as exc:
        print(f"no base bundle rows: {exc}", file=sys.stderr)
        return None


def _rank(fields: dict, cfg) -> int:
    return int(fields.get("rank", cfg.rank))


def _cell(values) -> str:
    if not values:
        return "-"
    values = np.asarray(values)
    return f"{values.mean():.3f} ± {values.std():.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("catalog", nargs="?", help="a catalog file (default: the benchmark catalogs)")
    parser.add_argument("--media-root")
    parser.add_argument("--catalogs", nargs="+", default=list(CATALOGS), help="benchmark catalogs to build and run")
    parser.add_argument("--data", type=Path, default=Path("mmalign-data/benchmarks"), help="where catalogs are written")
    parser.add_argument("--features", default="mmalign-data/features")
    parser.add_argument("--preset", default="offline-small")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--variants", nargs="*", default=None, help=f"student variants (default: student only): {list(VARIANTS)}"
    )
    parser.add_argument(
        "--base-variants",
        nargs="*",
        default=None,
        help=f"from-base student variants (default: all; the flag alone: none): {list(BASE_VARIANTS)}",
    )
    parser.add_argument(
        "--base-modes", nargs="*", default=list(BASE_MODES), help=f"how the teacher starts from the base: {BASE_MODES}"
    )
    parser.add_argument(
        "--zero-shot-only", action="store_true", help="svd, cca and the base's zero-shot rows only (no training)"
    )
    parser.add_argument("--dropout", type=float, default=None, help="the teacher's dropout (default: TrainConfig's)")
    parser.add_argument("--base", default="base", help="base bundle for the zero-shot/from-base rows (none: skip)")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="max teacher epochs (default TrainConfig's)")
    parser.add_argument("--epochs", type=int, default=None, help="max student epochs (default TrainConfig's)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: fastest on a busy shared CPU)")
    args = parser.parse_args(argv)
    if args.catalog:
        run_catalog(Path(args.catalog).stem, args.catalog, args.media_root, args)
        return 0
    args.data.mkdir(parents=True, exist_ok=True)
    ran = 0
    for name in args.catalogs:
        built = build_catalog(name, args.data)
        if isinstance(built, str):
            print(f"{name}: skipped: {built}", file=sys.stderr)
            continue
        run_catalog(name, *built, args)
        ran += 1
    return 0 if ran else 1


if __name__ == "__main__":
    raise SystemExit(main())
