"""How much of the teacher reaches the student: ways of distilling it, scored on VALIDATION splits.

    python -m benchmarks.distillation --catalogs papirus tuxpaint [--seeds 0 1 2] [--base base]
    python -m benchmarks.distillation --teachers --catalogs papirus [--seeds 0 1]
    python -m benchmarks.distillation --fusion 0.1 0.3 --catalogs papirus [--seeds 0 1]

Per catalog and seed: the split, CCA and the teacher fine-tuned from the base bundle (``fit_alignment``,
as ``mmalign train --init base`` does), then students from that teacher, each scored on the seed's
validation split (never the test split: this is what chooses between them). Rows: the teacher, the
default student (CCA start, distilled), and the variants of ``STUDENTS``. ``rrr`` students start from
the teacher's best rank-r linear approximation (reduced-rank ridge regression of the teacher's
embeddings of the training features on those features, per modality: :func:`teacher_linearisation`)
instead of from CCA. Printed: recall@10 t→i / i→t, MRR, primary metric, and each student's retention
(student / teacher, primary metric), mean ± std over seeds.

``--teachers``: the teacher fine-tuned from the base with the settings of ``TEACHERS`` instead (no
student), scored the same way on the validation split, next to the catalog's CCA.

``--fusion D ...``: the whole default fit from scratch (``fit_alignment``) at each teacher dropout D; per seed,
the student's learned fusion weights (and which were kept: :func:`~mmalign.plugin.align.fit.choose_fusion`)
and its ``→ fused`` MRR on the validation and the test split, with
text→image recall@10 on test (how a teacher setting reaches the fused vectors: nothing that selects the
student's epoch looks at a ``→ fused`` cell).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.alignment import benchmark_data, build_catalog

#: name -> (start: "cca" or "rrr", ridge for rrr, TrainConfig fields over the defaults, train the student?)
STUDENTS: dict[str, tuple[str, float, dict, bool]] = {
    "student alpha 8": ("cca", 0.0, {"alpha": 8.0}, True),
    "student beta 2": ("cca", 0.0, {"beta": 2.0}, True),
    "student mixup 0.5": ("cca", 0.0, {"unpaired_mixup": 0.5}, True),
    "student lr 1e-3": ("cca", 0.0, {"lr": 1e-3}, True),
    "student hidden 16": ("cca", 0.0, {"student_hidden": 16}, True),
    "student hidden 16, lr 1e-3": ("cca", 0.0, {"student_hidden": 16, "lr": 1e-3}, True),
    "rrr 0.1, no training": ("rrr", 0.1, {}, False),
    "rrr 1, no training": ("rrr", 1.0, {}, False),
    "rrr 10, no training": ("rrr", 10.0, {}, False),
    "rrr 1, distilled": ("rrr", 1.0, {}, True),
}

#: Teacher settings tried with ``--teachers``: name -> TrainConfig fields over the defaults.
TEACHERS: dict[str, dict] = {
    "teacher": {},
    "teacher dropout 0.3": {"dropout": 0.3},
    "teacher dropout 0.5": {"dropout": 0.5},
    "teacher weight decay 0.01": {"weight_decay": 0.01},
    "teacher lr 1e-3": {"teacher_lr": 1e-3},
    "teacher batch 256": {"teacher_batch_size": 256},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogs", nargs="+", default=["papirus", "tuxpaint"])
    parser.add_argument("--data", type=Path, default=Path("mmalign-data/benchmarks"))
    parser.add_argument("--features", type=Path, default=Path("mmalign-data/features"))
    parser.add_argument("--preset", default="offline-small")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--base", default="base")
    parser.add_argument("--students", nargs="*", default=None, help=f"default all: {list(STUDENTS)}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--teachers", nargs="*", default=None, help=f"teacher settings instead (the flag alone: all): {list(TEACHERS)}"
    )
    parser.add_argument("--fusion", type=float, nargs="+", help="teacher dropouts: the student's fusion weights")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    for name in args.catalogs:
        built = build_catalog(name, args.data)
        if isinstance(built, str):
            print(f"{name}: skipped: {built}")
            continue
        if args.fusion:
            run_fusion(name, *built, args)
        else:
            (run_catalog if args.teachers is None else run_teachers)(name, *built, args)


def run_catalog(label: str, catalog_path: Path, media_root: Path, args) -> None:
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.align.fit import fit_alignment
    from mmalign.plugin.align.trainer import train_student
    from mmalign.schemas import TrainConfig

    data = benchmark_data(catalog_path, media_root, args.features, args.preset)
    base = load_bundle(args.base)
    students = {k: v for k, v in STUDENTS.items() if args.students is None or k in args.students}
    scores: dict[str, list[tuple[float, float, float, float]]] = {}
    for seed in args.seeds:
        t0 = time.perf_counter()
        cfg = TrainConfig(seed=seed)
        fit = fit_alignment(data, cfg, echo=lambda line: None, base=base)
        teacher = fit.models["teacher"]
        models = {"cca": fit.models["cca"], "teacher": teacher, "student": fit.models["student"]}
        for name, (start, ridge, fields, train) in students.items():
            vcfg = TrainConfig(seed=seed, **fields)
            if start == "rrr":
                models[name] = teacher_linearisation(fit.train, teacher, vcfg, ridge)
                if train:
                    models[name], _ = train_student(fit.train, fit.val, vcfg, None, teacher, start=models[name])
            else:
                models[name], _ = train_student(fit.train, fit.val, vcfg, fit.fits["cca"], teacher)
        for name, model in models.items():
            scores.setdefault(name, []).append(_val_scores(name, model, fit.val))
        print(f"  {label} seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\n{label}: VALIDATION split, mean ± std over seeds {args.seeds} (base {base.bundle_id})")
    teacher_primary = np.array([s[3] for s in scores["teacher"]])
    _print_scores(scores, "/teacher", lambda primary: f"{(primary / teacher_primary).mean():>10.3f}")


def _val_scores(name, model, val) -> tuple[float, float, float, float]:
    from mmalign.plugin.align.evaluation import evaluate_embedder, primary_metric
    from mmalign.plugin.align.trainer import TorchEmbedder

    rows = evaluate_embedder(name, TorchEmbedder(model, name), val, with_fused=False)
    cell = {(r["query"], r["target"]): r for r in rows}
    ti, it = cell[("text", "image")], cell[("image", "text")]
    return ti["recall@10"], it["recall@10"], (ti["mrr"] + it["mrr"]) / 2, primary_metric(rows)


def run_teachers(label: str, catalog_path: Path, media_root: Path, args) -> None:
    import torch

    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.align.fit import choose_cca, fit_teacher, split_for_training
    from mmalign.schemas import TrainConfig

    data = benchmark_data(catalog_path, media_root, args.features, args.preset)
    base = load_bundle(args.base)
    scores: dict[str, list] = {}
    seconds: dict[str, list] = {}
    for seed in args.seeds:
        cfg = TrainConfig(seed=seed)
        train, val, _test, _ = split_for_training(data, cfg, lambda line: None)
        reg, _, cca = choose_cca(train, val, cfg, cfg.rank, lambda line: None)
        scores.setdefault("cca", []).append(_val_scores("cca", cca, val))
        for name, fields in TEACHERS.items():
            if args.teachers and name not in args.teachers:
                continue
            t0 = time.perf_counter()
            torch.manual_seed(seed)  # as fit_alignment does: every setting starts from the same draw
            teacher, result = fit_teacher(train, val, TrainConfig(seed=seed, **fields), reg, None, base, "hidden")
            seconds.setdefault(name, []).append(time.perf_counter() - t0)
            scores.setdefault(name, []).append(_val_scores(name, teacher, val))
            print(f"  {label} seed {seed} {name}: best epoch {result.best_epoch}", flush=True)
    print(f"\n{label}: VALIDATION split, teachers from the base, mean ± std over seeds {args.seeds}")
    cca_primary = np.array([s[3] for s in scores["cca"]])
    took = {name: f"{np.mean(v):>6.0f}" for name, v in seconds.items()}
    _print_scores(scores, "− cca", lambda primary: f"{(primary - cca_primary).mean():>+10.3f}", took, "s")


def run_fusion(label: str, catalog_path: Path, media_root: Path, args) -> None:
    from mmalign.plugin.align.evaluation import evaluate_embedder
    from mmalign.plugin.align.fit import fit_alignment
    from mmalign.plugin.align.trainer import TorchEmbedder
    from mmalign.schemas import TrainConfig

    data = benchmark_data(catalog_path, media_root, args.features, args.preset)
    head = f"{'catalog':<10}{'seed':>5}{'dropout':>8}  {'fusion weights (kept)':<50}"
    print(head + f"{'→fused MRR, val':<26}{'→fused MRR, test':<26}t→i R@10")
    for seed in args.seeds:
        for dropout in args.fusion:
            fit = fit_alignment(data, TrainConfig(seed=seed, dropout=dropout), echo=lambda line: None)
            student = fit.models["student"]
            chosen = fit.training_summary["fusion"]
            weights = " ".join(f"{m} {w:.2f}" for m, w in chosen["learned_weights"].items()) + f" ({chosen['kept']})"
            val = evaluate_embedder("student", TorchEmbedder(student, "student"), fit.val, with_fused=True)
            test = [r for r in fit.results if r["model"] == "student"]
            t2i = next(r["recall@10"] for r in test if (r["query"], r["target"]) == ("text", "image"))
            cells = f"{_fused_mrr(val):<26}{_fused_mrr(test):<26}{t2i:.3f}"
            print(f"{label:<10}{seed:>5}{dropout:>8}  {weights:<50}{cells}", flush=True)


def _fused_mrr(rows) -> str:
    """``i 0.998 t 1.000``: the MRR of each query modality (its initial) against the fused vectors."""
    return " ".join(f"{r['query'][0]} {r['mrr']:.3f}" for r in rows if r["target"] == "fused")


def _print_scores(scores: dict, last_header: str, last, extra=None, extra_header: str = "") -> None:
    """One row per model: mean ± std over seeds of each :func:`_val_scores` column, then ``last(primary scores)``
    (against the reference row) and ``extra[name]`` where given."""
    extra = extra or {}
    head = f"{'model':<28}{'t→i R@10':>16}{'i→t R@10':>16}{'MRR t↔i':>16}{'primary':>16}{last_header:>10}"
    print(head + (f"{extra_header:>6}" if extra else ""))
    for name, rows in scores.items():
        arr = np.array(rows)
        cells = "".join(f"{arr[:, k].mean():>10.3f} ± {arr[:, k].std():.3f}" for k in range(4))
        print(f"{name:<28}{cells}{last(arr[:, 3])}{extra.get(name, '')}")


def teacher_linearisation(train, teacher, cfg, ridge: float):
    """A student whose projection of each modality is the rank-r ridge regression of the teacher's
    embeddings of the training features on those (centred) features; fusion weights start equal."""
    import torch

    from mmalign.plugin.align.student import Student

    student = Student(train.dims(), cfg.dim, cfg.rank, cfg.fusion, cfg.student_hidden)
    teacher.eval()
    for m in student.modalities:
        x = train.features[m][train.masks[m]].astype(np.float64)
        with torch.no_grad():
            target = teacher.embed(m, torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64)
        mean = x.mean(0)
        xc = x - mean
        scale = np.sqrt((xc**2).sum(1).mean()) / np.sqrt(x.shape[1])
        # ridge relative to the features' scale: (XᵀX + λ s² n I)⁻¹ XᵀT
        gram = xc.T @ xc + ridge * scale**2 * len(xc) * np.eye(x.shape[1])
        weights = np.linalg.solve(gram, xc.T @ target)  # (d, D)
        fitted = xc @ weights
        proj = student.projections[m.value]
        _, _, vt = np.linalg.svd(fitted, full_matrices=False)
        u = vt[: proj.rank].T  # (D, r): the fitted embeddings' top directions
        v = weights @ u  # (d, r)
        with torch.no_grad():
            proj.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            norm = np.linalg.norm(v, axis=0).mean()
            proj.V.copy_(torch.as_tensor(v / max(norm, 1e-12), dtype=torch.float32))
            proj.U.copy_(torch.as_tensor(u, dtype=torch.float32))
    return student


if __name__ == "__main__":
    main()
