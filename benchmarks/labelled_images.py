"""The labelled image encoder's options, chosen on validation splits (issue #21; docs/encoders.md).

    python -m benchmarks.labelled_images grid      [--catalogs tuxpaint wesnoth] [--seeds 0 1 2]
    python -m benchmarks.labelled_images zero-shot [--catalogs tuxpaint wesnoth papirus] [--seeds 0 1 2]
    python -m benchmarks.labelled_images bridge    --pool POOL.jsonl --pool-features DIR [--base base]

``grid``: for each temperature / top-k / weight, the catalog's CCA on ``[efficientnet-lite0 ; label part]``
fitted on its training split and scored on its **validation** split (the mean of recall@1/5/10 that training
selects on), against the plain ``efficientnet-lite0`` feature. ``zero-shot``: no pairs at all: each text's
MiniLM vector against each image's label part, both centred on the training items' means, recall@10 on the
validation split (mean of text→image and image→text). ``bridge``: the base bundle's distilled student (the first
columns of its joined student) joined again with the label bridge at several weights, from the pool's cached
features, against the student alone and the bridge alone, on the same validation splits (how
``BRIDGE_WEIGHT`` was chosen). The label parts are computed from the cached
``efficientnet-lite0`` features (catalogs and features as ``benchmarks.alignment`` builds them; run it once
first), so nothing is encoded again. The test splits are never read.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

TEMPERATURES = (1.0, 2.0, 4.0)
TOP_K = (5, 20, 100)
WEIGHTS = (0.25, 0.5, 1.0)


def _parts(args):
    """(head, class-name embeddings, loader of a catalog's plain features)."""
    from benchmarks.base_prior import _catalog_data
    from mmalign.plugin.encoders import build_encoder
    from mmalign.plugin.encoders.labels import class_names, classifier_head
    from mmalign.plugin.encoders.registry import get_encoder_spec

    spec = get_encoder_spec("efficientnet-lite0-labels")
    text = build_encoder(spec.text_encoder, device="cpu")
    names = np.asarray(text.encode([spec.prompt.format(n) for n in class_names(spec.vocabulary)]), np.float32)
    plain = SimpleNamespace(
        modalities=["image", "text"], encoder_spec=lambda m: {"image": spec.backbone, "text": spec.text_encoder}[m]
    )
    return classifier_head(spec), names, lambda name: _catalog_data(name, args, plain)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _recall10(sims: np.ndarray) -> float:
    ranks = (sims > np.diag(sims)[:, None]).sum(1)
    return float((ranks < 10).mean())


def grid(args) -> None:
    from mmalign.plugin.align.evaluation import evaluate_embedder, primary_metric
    from mmalign.plugin.align.fit import choose_cca, split_for_training
    from mmalign.plugin.align.trainer import TorchEmbedder
    from mmalign.plugin.encoders.labels import label_part
    from mmalign.schemas import TrainConfig

    head, names, load = _parts(args)
    options = [None, *itertools.product(TEMPERATURES, TOP_K, WEIGHTS)]
    scores: dict[tuple, dict[str, float]] = {}
    for name in args.catalogs:
        data = load(name)
        image, mask = data.features["image"], data.masks["image"]
        for opts in options:
            run = data.subset(np.arange(len(data)))
            if opts is not None:
                spec = SimpleNamespace(temperature=opts[0], top_k=opts[1], weight=opts[2])
                labels = label_part(image, head, names, spec) * mask[:, None]
                run.features["image"] = np.concatenate([image, labels], axis=1).astype(np.float32)
            values = []
            for seed in args.seeds:
                cfg = TrainConfig(seed=seed)
                train, val, _, _ = split_for_training(run, cfg, lambda line: None)
                _, _, cca = choose_cca(train, val, cfg, cfg.rank, lambda line: None)
                values.append(
                    primary_metric(evaluate_embedder("cca", TorchEmbedder(cca, "cca"), val, with_fused=False))
                )
            scores.setdefault(opts, {})[name] = float(np.mean(values))
            print(json.dumps({"catalog": name, "options": opts, "val": round(scores[opts][name], 4)}), flush=True)
    plain = scores[None]
    print("\n| temperature | top-k | weight | " + " | ".join(args.catalogs) + " | sum |")
    print("|---|---|---|" + "---|" * (len(args.catalogs) + 1))
    gains = {o: {c: v - plain[c] for c, v in s.items()} for o, s in scores.items() if o is not None}
    for opts, gain in sorted(gains.items(), key=lambda kv: -sum(kv[1].values())):
        cells = " | ".join(f"{gain[c]:+.3f}" for c in args.catalogs)
        print(f"| {opts[0]} | {opts[1]} | {opts[2]} | {cells} | {sum(gain.values()):+.3f} |")
    print("\nplain efficientnet-lite0 (val): " + ", ".join(f"{c} {v:.3f}" for c, v in plain.items()))


def zero_shot(args) -> None:
    from mmalign.plugin.align.fit import split_for_training
    from mmalign.plugin.encoders.labels import label_part
    from mmalign.plugin.encoders.registry import get_encoder_spec
    from mmalign.schemas import TrainConfig

    head, names, load = _parts(args)
    spec = get_encoder_spec("efficientnet-lite0-labels")
    print("| catalog | val queries | label part vs text, R@10 | chance |\n|---|---|---|---|")
    for name in args.catalogs:
        data = load(name)
        values, n = [], 0
        for seed in args.seeds:
            train, val, _, _ = split_for_training(data, TrainConfig(seed=seed), lambda line: None)
            values.append(zero_shot_recall(train, val, lambda image: label_part(image, head, names, spec)))
            n = int((val.masks["image"] & val.masks["text"]).sum())
        print(f"| {name} | {n} | {np.mean(values):.3f} | {min(1.0, 10 / n):.3f} |", flush=True)


def zero_shot_recall(train, val, label_of) -> float:
    """Recall@10 (mean of text→image and image→text) of the label part ``label_of(image features)`` against the
    text vectors on ``val``'s items with both, each side centred on ``train``'s mean: no pairs used."""
    image_mean = _unit(label_of(train.features["image"][train.masks["image"]])).mean(0)
    text_mean = _unit(train.features["text"][train.masks["text"]]).mean(0)
    both = val.masks["image"] & val.masks["text"]
    images = _unit(_unit(label_of(val.features["image"][both])) - image_mean)
    texts = _unit(_unit(val.features["text"][both]) - text_mean)
    sims = texts @ images.T
    return (_recall10(sims) + _recall10(sims.T)) / 2


def unjoined(student, rank: int):
    """The distilled student inside a joined one: its first ``rank`` code columns (the bridge's are the rest)."""
    import torch

    from mmalign.plugin.align.student import Student

    dims = {m: student.projections[m.value].in_dim for m in student.modalities}
    out = Student(dims, student.dim, rank, student.fusion.strategy)
    with torch.no_grad():
        for m in student.modalities:
            old, new = student.projections[m.value], out.projections[m.value]
            new.mean.copy_(old.mean)
            new.V.copy_(old.V[:, :rank])
            new.U.copy_(old.U[:, :rank])
    return out.eval()


def bridge(args) -> None:
    import torch

    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.align.bridge import with_label_bridge
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.align.fit import split_for_training
    from mmalign.plugin.workflows.pretrain import pool_pairs
    from mmalign.schemas import Modality, TrainConfig

    base = load_bundle(args.base)
    label_start = base.encoder_spec(Modality.IMAGE).backbone.dim
    distilled = unjoined(base.student, base.config.training_summary["label_bridge"]["distilled_rank"])
    specs = {m: base.encoder_spec(m) for m in base.modalities}  # the pool's features as the base was made from
    pool, _, _ = pool_pairs(open_catalog(args.pool).items(), args.pool_features, specs)
    models = {"student alone": distilled, "bridge alone": with_label_bridge(distilled, pool, label_start, 1e6)}
    for weight in (0.25, 0.5, 1.0):
        models[f"joined, weight {weight}"] = with_label_bridge(distilled, pool, label_start, weight)
    from benchmarks.base_prior import _catalog_data

    def embed(model, modality, x):
        with torch.no_grad():
            return model.embed(modality, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    print("| model | " + " | ".join(args.catalogs) + " |\n|---|" + "---|" * len(args.catalogs))
    table: dict[str, list[str]] = {name: [] for name in models}
    for name in args.catalogs:
        data = _catalog_data(name, args, base)
        values: dict[str, list[float]] = {}
        for seed in args.seeds:
            _, val, _, _ = split_for_training(data, TrainConfig(seed=seed), lambda line: None)
            both = val.masks[Modality.IMAGE] & val.masks[Modality.TEXT]
            for label, model in models.items():
                texts = embed(model, Modality.TEXT, val.features[Modality.TEXT][both])
                images = embed(model, Modality.IMAGE, val.features[Modality.IMAGE][both])
                sims = texts @ images.T
                values.setdefault(label, []).append((_recall10(sims) + _recall10(sims.T)) / 2)
        for label, v in values.items():
            table[label].append(f"{np.mean(v):.3f}")
    for label, cells in table.items():
        print(f"| {label} | " + " | ".join(cells) + " |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["grid", "zero-shot", "bridge"])
    parser.add_argument("--catalogs", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=Path("mmalign-data/benchmarks"))
    parser.add_argument("--features", default="mmalign-data/features")
    parser.add_argument("--base", default="base", help="bridge: the base bundle (default: the shipped one)")
    parser.add_argument("--pool", default="mmalign-data/pool/pool.jsonl", help="bridge: the pool it was made from")
    parser.add_argument("--pool-features", default="mmalign-data/features", help="bridge: the pool's feature cache")
    args = parser.parse_args(argv)
    if args.what == "grid":
        args.catalogs = args.catalogs or ["tuxpaint", "wesnoth"]
        grid(args)
    elif args.what == "bridge":
        args.catalogs = args.catalogs or ["tuxpaint", "wesnoth", "papirus"]
        bridge(args)
    else:
        args.catalogs = args.catalogs or ["tuxpaint", "wesnoth", "papirus"]
        zero_shot(args)


if __name__ == "__main__":
    main()
