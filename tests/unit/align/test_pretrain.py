"""Pretraining on a pool of several sources (centred per source, domain-balanced teacher batches), the
base bundle it writes, and a catalog's teacher fine-tuned from it (``--init base``)."""

import numpy as np
import pytest

from mmalign.plugin.features.paired import PairedFeatures
from mmalign.schemas import Modality, TrainConfig

IMAGE, TEXT = Modality.IMAGE, Modality.TEXT
TINY = dict(dim=16, rank=6, teacher_hidden=32, teacher_layers=1, epochs=3, teacher_epochs=4, patience=30)


def shifted_sources(n_sources=5, per_source=80, latent=6, dims=(40, 24), seed=0):
    """Items of several sources: one hidden latent -> image/text by shared maps, plus a large offset per
    source and modality (each source's own "style"), as in a pool of icon sets."""
    rng = np.random.default_rng(seed)
    maps = {m: rng.normal(size=(latent, d)) for m, d in zip((IMAGE, TEXT), dims)}
    ids, sources, feats = [], [], {IMAGE: [], TEXT: []}
    for s in range(n_sources):
        z = rng.normal(size=(per_source, latent))
        for m in maps:
            offset = 6.0 * rng.normal(size=maps[m].shape[1])
            feats[m].append(z @ maps[m] + offset + 0.1 * rng.normal(size=(per_source, maps[m].shape[1])))
        ids += [f"s{s}-{i:03d}" for i in range(per_source)]
        sources += [f"source-{s}"] * per_source
    data = PairedFeatures.from_arrays(ids, {m: np.concatenate(v) for m, v in feats.items()})
    return data, sources


def test_centring_by_source_removes_each_sources_offset():
    from mmalign.plugin.align.pretrain import centre_by_source

    data, sources = shifted_sources()
    centred, global_mean = centre_by_source(data, sources)
    src = np.asarray(sources)
    for s in set(sources):
        assert np.abs(centred.features[IMAGE][src == s].mean(0)).max() < 1e-4
    assert np.allclose(global_mean[IMAGE], data.features[IMAGE].mean(0), atol=1e-4)  # equal-sized sources


def test_pretrained_base_retrieves_on_a_source_it_never_saw_once_recentred(tmp_path):
    """Known answer: four sources pretrain the base; a fifth (its own offsets) is retrieved text -> image
    far above chance after centring on its own mean, and the written base bundle loads with that teacher."""
    from mmalign.plugin.align.bundle import load_bundle, save_bundle
    from mmalign.plugin.align.evaluation import evaluate_embedder
    from mmalign.plugin.align.pretrain import domain_mean, pretrain, recentre
    from mmalign.plugin.align.trainer import TorchEmbedder
    from mmalign.plugin.encoders.registry import get_encoder_spec

    data, sources = shifted_sources()
    pool = np.asarray(sources) != "source-4"
    held = data.subset(np.flatnonzero(~pool))
    pool_data = data.subset(np.flatnonzero(pool))
    cfg = TrainConfig(**TINY)
    groups = list(pool_data.item_ids)
    result = pretrain(
        pool_data,
        [s for s, p in zip(sources, pool) if p],
        groups,
        cfg,
        batch_sources=2,
        per_source=16,
        student_epochs=2,
        echo=lambda line: None,
    )
    assert not set(held.item_ids) & set(pool_data.item_ids)
    teacher = recentre(result.models["teacher"], domain_mean(held))
    rows = evaluate_embedder("teacher", TorchEmbedder(teacher, "teacher"), held, with_fused=False)
    recall = next(r["recall@10"] for r in rows if (r["query"], r["target"]) == ("text", "image"))
    assert recall > 0.6  # chance: 10 / 80 = 0.125
    specs = {
        IMAGE: get_encoder_spec("efficientnet-lite0").model_copy(update={"dim": 40}),
        TEXT: get_encoder_spec("minilm-l6").model_copy(update={"dim": 24}),
    }
    pool_record = {"name": "synthetic", "n_pairs": len(pool_data), "sources": [], "excluded": ["source-4"]}
    save_bundle(
        tmp_path / "base",
        specs=specs,
        cfg=cfg,
        student=result.models["student"],
        teacher=result.models["teacher"],
        baselines={"cca": result.models["cca"]},
        summary={"split": {"seed": 0, "test_ids": []}, "pool": pool_record},
    )
    base = load_bundle(tmp_path / "base")
    assert base.config.pool.excluded == ["source-4"] and base.teacher is not None


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory):
    from mmalign.plugin.align.bundle import load_bundle, save_bundle
    from mmalign.plugin.align.pretrain import pretrain
    from mmalign.plugin.encoders.registry import get_encoder_spec

    data, sources = shifted_sources(n_sources=3, per_source=60)
    cfg = TrainConfig(**TINY)
    result = pretrain(
        data,
        sources,
        list(data.item_ids),
        cfg,
        batch_sources=2,
        per_source=16,
        student_epochs=1,
        echo=lambda line: None,
    )
    specs = {
        IMAGE: get_encoder_spec("efficientnet-lite0").model_copy(update={"dim": 40}),
        TEXT: get_encoder_spec("minilm-l6").model_copy(update={"dim": 24}),
    }
    path = tmp_path_factory.mktemp("base") / "base"
    save_bundle(
        path,
        specs=specs,
        cfg=cfg,
        student=result.models["student"],
        teacher=result.models["teacher"],
        baselines={},
        summary={"split": {"seed": 0, "test_ids": []}},
    )
    return load_bundle(path)


def test_init_from_base_starts_the_catalogs_teacher_from_the_base_and_no_test_item_reaches_training(
    base_bundle, monkeypatch
):
    """``--init base`` on a tiny catalog (another seed: a domain the base never saw): the teacher's epoch 0
    is the base teacher re-centred on the catalog's training items (never its test items); the student
    starts from the catalog's CCA; no fit sees a test item."""
    import mmalign.plugin.align.fit as fit_module
    import mmalign.plugin.align.pretrain as pretrain_module
    import mmalign.plugin.align.trainer as trainer

    seen: dict[str, set] = {}

    def record(name, original):
        def wrapper(data, *args, **kwargs):
            seen.setdefault(name, set()).update(data.item_ids)
            return original(data, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(trainer, "train_teacher", record("teacher", trainer.train_teacher))
    monkeypatch.setattr(trainer, "train_student", record("student", trainer.train_student))
    monkeypatch.setattr(pretrain_module, "domain_mean", record("mean", pretrain_module.domain_mean))
    catalog, _ = shifted_sources(n_sources=1, per_source=120, seed=7)
    cfg = TrainConfig(**{**TINY, "teacher_epochs": 0})  # epoch 0 only: the teacher is the base, re-centred
    result = fit_module.fit_alignment(catalog, cfg, base=base_bundle, base_mode="all", echo=lambda line: None)
    test_ids = set(result.split["test_ids"])
    for name in ("teacher", "student", "mean"):
        assert seen[name] and not seen[name] & test_ids, name
    teacher = result.models["teacher"]
    base_state = base_bundle.teacher.state_dict()
    for key, value in teacher.state_dict().items():
        if not key.endswith(".mean"):
            assert np.array_equal(value.numpy(), base_state[key].numpy()), key
    train = catalog.select([i for i in catalog.item_ids if i not in test_ids and i in seen["mean"]])
    np.testing.assert_allclose(teacher.towers["image"].mean.numpy(), train.features[IMAGE].mean(0), atol=1e-4)


def test_init_from_base_by_default_keeps_the_catalogs_cca_and_adds_the_base_hidden_layers(base_bundle):
    """The default mode (``hidden``, chosen on the benchmark catalogs: never below the teacher from scratch at
    epoch 0): the linear map is the catalog's CCA, as without a base, and each tower's hidden layer is the
    base's, behind an output layer that starts at zero, so the teacher at epoch 0 embeds as the scratch one."""
    import copy

    import torch

    from mmalign.plugin.align.fit import fit_alignment

    base = copy.deepcopy(base_bundle)
    with torch.no_grad():  # a hidden layer unlike a fresh one of the same seed (the tiny base barely trained)
        for m in (IMAGE, TEXT):
            base.teacher.towers[m.value].mlp[0].weight.add_(0.5)
    catalog, _ = shifted_sources(n_sources=1, per_source=120, seed=7)
    cfg = TrainConfig(**{**TINY, "teacher_epochs": 0})
    tuned = fit_alignment(catalog, cfg, base=base, echo=lambda line: None).models["teacher"]
    scratch = fit_alignment(catalog, cfg, echo=lambda line: None).models["teacher"]
    tuned.eval(), scratch.eval()
    for m in (IMAGE, TEXT):
        base_hidden = base.teacher.towers[m.value].mlp[0].weight
        assert torch.equal(tuned.towers[m.value].mlp[0].weight, base_hidden)
        assert not torch.equal(scratch.towers[m.value].mlp[0].weight, base_hidden)
        assert torch.equal(tuned.towers[m.value].linear.weight, scratch.towers[m.value].linear.weight)
        x = torch.from_numpy(catalog.features[m][:5])
        with torch.no_grad():
            assert torch.allclose(tuned.embed(m, x), scratch.embed(m, x), atol=1e-6)


def test_init_from_base_refuses_another_shared_dimension(base_bundle):
    from mmalign.connectors.errors import ConfigError
    from mmalign.plugin.align.fit import fit_alignment

    catalog, _ = shifted_sources(n_sources=1, per_source=60, seed=3)
    with pytest.raises(ConfigError, match="needs dim 16"):
        fit_alignment(catalog, TrainConfig(**{**TINY, "dim": 12}), base=base_bundle, echo=lambda line: None)
