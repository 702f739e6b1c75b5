"""The distilled student: no test item's pair reaches training, distillation from single-modality
items, the non-linear code residual, and bundles with it (old bundles still load)."""

import json

import numpy as np
import pytest
import torch

from mmalign.plugin.features.paired import PairedFeatures, split_items
from mmalign.schemas import Modality, TrainConfig

IMAGE, TEXT = Modality.IMAGE, Modality.TEXT
TINY = dict(dim=16, rank=6, teacher_hidden=32, teacher_layers=1, epochs=30, teacher_epochs=3, patience=30)


def latent_catalog(n=240, latent=6, dims=(40, 24), paired=0.2, seed=0):
    """Image and text features of a hidden latent; only a ``paired`` share of the items has both,
    the others have one modality only."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, latent))
    maps = {m: rng.normal(size=(latent, d)) for m, d in zip((IMAGE, TEXT), dims)}
    feats = {m: z @ maps[m] + 0.05 * rng.normal(size=(n, maps[m].shape[1])) + 2.0 for m in maps}
    kind = rng.random(n)
    masks = {IMAGE: kind < 1 - (1 - paired) / 2, TEXT: (kind < paired) | (kind >= 1 - (1 - paired) / 2)}
    ids = [f"item-{i:04d}" for i in range(n)]
    return PairedFeatures.from_arrays(ids, feats, masks), z, maps


def test_split_never_shares_an_item():
    ids = [f"i{k}" for k in range(97)]
    for seed in range(5):
        train, val, test = split_items(ids, 0.2, 0.15, seed)
        assert not set(train) & set(test) and not set(val) & set(test) and not set(train) & set(val)
        assert sorted(train + val + test) == sorted(ids)
        assert split_items(list(reversed(ids)), 0.2, 0.15, seed) == (train, val, test)  # order-free


def test_no_training_step_sees_a_test_item(monkeypatch):
    """Every feature matrix that reaches a fit (cca, svd, teacher, student, the unpaired pools) holds
    only training items (val only for early stopping): a test item's pair cannot leak, by construction."""
    import mmalign.plugin.align.fit as fit_module
    import mmalign.plugin.align.trainer as trainer

    seen: dict[str, set] = {}

    def record(name, original):
        def wrapper(data, *args, **kwargs):
            seen.setdefault(name, set()).update(data.item_ids)
            if name in ("teacher", "student"):
                seen.setdefault(name + "-val", set()).update(args[0].item_ids)
            return original(data, *args, **kwargs)

        return wrapper

    for name, module, attr in (
        ("cca", fit_module, "fit_cca"),
        ("svd", fit_module, "fit_svd"),
        ("teacher", trainer, "train_teacher"),
        ("student", trainer, "train_student"),
        ("pools", trainer, "single_modality_pools"),
    ):
        monkeypatch.setattr(module, attr, record(name, getattr(module, attr)))
    data, _, _ = latent_catalog(n=120)
    cfg = TrainConfig(**{**TINY, "epochs": 2, "teacher_epochs": 2, "unpaired_cosine": 1.0, "unpaired_mixup": 0.5})
    result = fit_module.fit_alignment(data, cfg)
    test_ids = set(result.split["test_ids"])
    assert test_ids and set(result.test.item_ids) == test_ids
    train_ids, val_ids, _ = split_items(data.item_ids, cfg.test_fraction, cfg.val_fraction, cfg.seed)
    assert set(seen) == {"cca", "svd", "teacher", "teacher-val", "student", "student-val", "pools"}
    for name in ("cca", "svd", "teacher", "student", "pools"):
        assert seen[name] <= set(train_ids) and not seen[name] & test_ids, name
    assert seen["teacher-val"] <= set(val_ids) and seen["student-val"] <= set(val_ids)


def test_single_modality_pools_keep_every_item_and_no_pairing():
    from mmalign.plugin.align.trainer import single_modality_pools

    data, _, _ = latent_catalog(n=60)
    pools = single_modality_pools(data)
    assert set(pools) == {IMAGE, TEXT}
    for m in (IMAGE, TEXT):
        assert len(pools[m]) == int(data.masks[m].sum())  # one-modality items included
        np.testing.assert_array_equal(pools[m], data.features[m][data.masks[m]])
    assert len(pools[IMAGE]) != len(pools[TEXT])  # rows of one modality are not matched to the other's


def _oracle_teacher(data, z, maps, dim):
    """A Teacher whose towers map each modality onto the hidden latent (known answer)."""
    from mmalign.plugin.align.teacher import Teacher

    teacher = Teacher(data.dims(), dim, hidden=8, layers=1)
    with torch.no_grad():
        for m in maps:
            x = data.features[m][data.masks[m]]
            mean = x.mean(0)
            w, *_ = np.linalg.lstsq(x - mean, z[data.masks[m]], rcond=None)  # (d, latent)
            weight = np.zeros((dim, x.shape[1]), np.float32)
            weight[: w.shape[1]] = w.T
            teacher.towers[m.value].mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            teacher.towers[m.value].linear.weight.copy_(torch.from_numpy(weight))
    return teacher.eval()


def test_unpaired_distillation_learns_from_single_modality_items():
    """12 training pairs and 300 single-modality training items: matching the teacher on
    single-modality inputs recovers the alignment that the 12 pairs alone cannot teach a randomly
    initialised student."""
    from mmalign.plugin.align.evaluation import evaluate_embedder
    from mmalign.plugin.align.trainer import TorchEmbedder, train_student

    data, z, maps = latent_catalog(n=400, latent=10, paired=1.0)
    rng = np.random.default_rng(1)
    train_rows, val_rows, test_rows = np.arange(0, 312), np.arange(312, 340), np.arange(340, 400)
    masks = {m: k.copy() for m, k in data.masks.items()}
    single = train_rows[12:]
    only_image = rng.random(len(single)) < 0.5
    masks[TEXT][single[only_image]] = False
    masks[IMAGE][single[~only_image]] = False
    data = PairedFeatures.from_arrays(data.item_ids, data.features, masks)
    train, val, test = data.subset(train_rows), data.subset(val_rows), data.subset(test_rows)
    assert int((train.masks[IMAGE] & train.masks[TEXT]).sum()) == 12
    teacher = _oracle_teacher(train, z[train_rows], maps, 16)

    def recall(student):
        rows = evaluate_embedder("s", TorchEmbedder(student, "s"), test, with_fused=False)
        return next(r["recall@1"] for r in rows if (r["query"], r["target"]) == ("text", "image"))

    base = dict(TINY, rank=10, init="random", alpha=0.0, beta=0.0, lr=1e-2, epochs=12, unpaired_batch=64)
    plain, _ = train_student(
        train, val, TrainConfig(**base, unpaired_cosine=0.0, unpaired_relational=0.0), None, teacher
    )
    distilled, _ = train_student(
        train, val, TrainConfig(**base, unpaired_cosine=1.0, unpaired_relational=1.0), None, teacher
    )
    print("recall@1 text→image", recall(distilled), recall(plain))
    assert recall(distilled) >= 0.8 and recall(distilled) > recall(plain) + 0.3, (recall(distilled), recall(plain))


def test_code_residual_starts_at_zero_and_projects_one_modality_at_a_time():
    from mmalign.plugin.align.closed_form import fit_cca
    from mmalign.plugin.align.student import build_student

    data, _, _ = latent_catalog(n=80, paired=1.0)
    cfg = TrainConfig(**TINY)
    fit = fit_cca(data, cfg.rank, 0.1, 2.0)
    linear = build_student(data.dims(), cfg, fit)
    residual = build_student(data.dims(), cfg, fit, hidden=12)
    x = torch.from_numpy(data.features[IMAGE][:5])
    torch.testing.assert_close(residual.embed(IMAGE, x), linear.embed(IMAGE, x))  # B starts at zero
    extra = sum(12 * (d + 1) + 12 * cfg.rank for d in data.dims().values())
    assert residual.n_parameters() == linear.n_parameters() + extra
    assert residual.embed(TEXT, torch.from_numpy(data.features[TEXT][:3])).shape == (3, cfg.dim)


def test_bundle_with_a_residual_student_round_trips_and_records_its_shape(tmp_path):
    from mmalign.plugin.align.bundle import load_bundle, save_bundle
    from mmalign.plugin.align.fit import fit_alignment
    from mmalign.plugin.encoders.registry import get_encoder_spec

    data, _, _ = latent_catalog(n=120, paired=1.0)
    cfg = TrainConfig(**{**TINY, "epochs": 3, "teacher_epochs": 2, "student_hidden": 8, "unpaired_cosine": 1.0})
    result = fit_alignment(data, cfg)
    specs = {
        IMAGE: get_encoder_spec("efficientnet-lite0").model_copy(update={"dim": 40}),
        TEXT: get_encoder_spec("minilm-l6").model_copy(update={"dim": 24}),
    }
    save_bundle(
        tmp_path / "b",
        specs=specs,
        cfg=cfg,
        student=result.models["student"],
        teacher=result.models["teacher"],
        baselines={k: result.models[k] for k in ("svd", "cca")},
        summary={"split": result.split},
    )
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["student"] == {"kind": "low-rank", "hidden": 8}
    bundle = load_bundle(tmp_path / "b")
    x = data.features[IMAGE][:4]
    expected = result.models["student"].eval().embed(IMAGE, torch.from_numpy(x)).detach().numpy()
    np.testing.assert_array_equal(bundle.embed(IMAGE, x), expected)
    assert bundle.baselines["cca"].projections["image"].residual is None


def test_bundle_written_before_the_residual_still_loads(tmp_path):
    """A bundle whose config has no ``student`` section and whose training config lacks the new
    fields (as written by earlier versions) loads as the linear student."""
    from mmalign.plugin.align.bundle import _config_digest, load_bundle, save_bundle
    from mmalign.plugin.align.fit import fit_alignment
    from mmalign.plugin.encoders.registry import get_encoder_spec

    data, _, _ = latent_catalog(n=100, paired=1.0)
    cfg = TrainConfig(**{**TINY, "epochs": 1, "teacher_epochs": 1})
    result = fit_alignment(data, cfg)
    specs = {
        IMAGE: get_encoder_spec("efficientnet-lite0").model_copy(update={"dim": 40}),
        TEXT: get_encoder_spec("minilm-l6").model_copy(update={"dim": 24}),
    }
    save_bundle(
        tmp_path / "old",
        specs=specs,
        cfg=cfg,
        student=result.models["student"],
        teacher=None,
        baselines={},
        summary={"split": result.split},
    )
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    del config["student"]
    for key in ("student_hidden", "unpaired_cosine", "unpaired_relational", "unpaired_batch", "unpaired_mixup"):
        del config["training"][key]
    config["training"].pop("teacher_batch_size", None)
    config["bundle_id"] = _config_digest(config)
    path.write_text(json.dumps(config))
    bundle = load_bundle(tmp_path / "old")
    assert bundle.student.hidden == 0
    x = data.features[TEXT][:3]
    expected = result.models["student"].eval().embed(TEXT, torch.from_numpy(x)).detach().numpy()
    np.testing.assert_array_equal(bundle.embed(TEXT, x), expected)


@pytest.mark.parametrize("hidden", [-1])
def test_negative_residual_width_is_refused(hidden):
    from mmalign.connectors.errors import ConfigError
    from mmalign.plugin.align.student import LowRankProjection

    with pytest.raises(ConfigError, match="hidden must be >= 0"):
        LowRankProjection(10, 8, 4, hidden)


def test_the_teachers_linearisation_reproduces_a_linear_teacher_and_training_can_start_from_it():
    """benchmarks.distillation's ``rrr`` start (known answer): a teacher whose towers are linear maps onto a
    10-d latent is reproduced by its rank-10 linearisation on items it was not fitted on; train_student
    with ``start`` trains a copy of that student (0 epochs: the start itself, left untouched)."""
    from benchmarks.distillation import teacher_linearisation
    from mmalign.plugin.align.trainer import train_student

    data, z, maps = latent_catalog(n=300, latent=10, paired=1.0)
    train, held_out = data.subset(np.arange(240)), data.subset(np.arange(240, 300))
    teacher = _oracle_teacher(train, z[:240], maps, 16)
    cfg = TrainConfig(**{**TINY, "rank": 10, "epochs": 0})
    student = teacher_linearisation(train, teacher, cfg, ridge=1e-4)
    for m in (IMAGE, TEXT):
        x = torch.from_numpy(held_out.features[m])
        with torch.no_grad():
            cosine = (student.embed(m, x) * teacher.embed(m, x)).sum(1)
        assert cosine.min() > 0.99, (m, cosine.min())
    trained, result = train_student(train, held_out, cfg, None, teacher, start=student)
    assert trained is not student and result.best_epoch == 0
    x = torch.from_numpy(held_out.features[IMAGE])
    torch.testing.assert_close(trained.embed(IMAGE, x), student.embed(IMAGE, x))
