"""The label bridge folded into a student: known answers on synthetic features."""

import numpy as np
import pytest
import torch

from mmalign.plugin.align.bridge import label_bridge_basis, padded, with_label_bridge
from mmalign.plugin.align.student import build_student
from mmalign.plugin.features.paired import PairedFeatures
from mmalign.schemas import Modality, TrainConfig

IMAGE, TEXT = Modality.IMAGE, Modality.TEXT
POOLED, WORDS, MEANING = 20, 12, 8


def labelled_items(n=200, seed=0):
    """Texts in an 8-d subspace of a 12-d space; each image = [20 random pooled columns ; its text, scaled, plus a
    little noise]: the label part of an image says what its text says, the pooled part says nothing."""
    rng = np.random.default_rng(seed)
    texts = rng.normal(size=(n, MEANING)) @ rng.normal(size=(MEANING, WORDS))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    pooled = 5 * rng.normal(size=(n, POOLED))
    labels = 3 * texts + 0.05 * rng.normal(size=(n, WORDS)) + 0.5
    ids = [f"i{k:03d}" for k in range(n)]
    return PairedFeatures.from_arrays(ids, {IMAGE: np.hstack([pooled, labels]), TEXT: texts})


def _embed(model, modality, x):
    with torch.no_grad():
        return model.embed(modality, torch.from_numpy(np.asarray(x, np.float32))).numpy()


def _recall_at_1(model, data):
    sims = _embed(model, TEXT, data.features[TEXT]) @ _embed(model, IMAGE, data.features[IMAGE]).T
    return float((sims.argmax(1) == np.arange(len(sims))).mean())


def _random_student(data):
    """A student that knows nothing, reading features centred on their means (as a pretrained one does)."""
    torch.manual_seed(0)
    student = build_student(data.dims(), TrainConfig(dim=32, rank=4), None).eval()
    with torch.no_grad():
        for m in (IMAGE, TEXT):
            student.projections[m.value].mean.copy_(torch.from_numpy(data.features[m].mean(0)))
    return student


def test_the_bridge_finds_what_a_student_that_knows_nothing_cannot():
    data = labelled_items()
    student = _random_student(data)
    assert _recall_at_1(student, data) < 0.1
    bridged = with_label_bridge(student, data, POOLED, weight=16.0, rank=MEANING)
    assert _recall_at_1(bridged, data) > 0.95
    assert bridged.projections[IMAGE.value].rank == 4 + MEANING


def test_cosines_add_the_students_and_the_bridges():
    data = labelled_items()
    student = _random_student(data)
    bridged = with_label_bridge(student, data, POOLED, weight=1.0, rank=MEANING)
    t, i = data.features[TEXT][:5], data.features[IMAGE][:5]
    raw_t, raw_i = (bridged.projections[m.value] for m in (TEXT, IMAGE))
    with torch.no_grad():
        code_t = raw_t.code(torch.from_numpy(t.astype(np.float32)))
        code_i = raw_i.code(torch.from_numpy(i.astype(np.float32)))
        full_t, full_i = code_t @ raw_t.U.T, code_i @ raw_i.U.T
        part_t, part_i = code_t[:, :4] @ raw_t.U[:, :4].T, code_i[:, :4] @ raw_i.U[:, :4].T
        rest_t, rest_i = code_t[:, 4:] @ raw_t.U[:, 4:].T, code_i[:, 4:] @ raw_i.U[:, 4:].T
    # the student's part is the student's embedding, scaled; the bridge's lies in other directions
    old = _embed(student, TEXT, t)
    np.testing.assert_allclose(torch.nn.functional.normalize(part_t, dim=1).numpy(), old, atol=1e-5)
    np.testing.assert_allclose((full_t @ full_i.T).numpy(), (part_t @ part_i.T + rest_t @ rest_i.T).numpy(), atol=1e-4)


def test_the_basis_is_the_texts_principal_directions():
    data = labelled_items()
    basis = label_bridge_basis(data, data.features[TEXT].mean(0), rank=3)
    assert basis.shape == (WORDS, 3)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-5)


def test_padding_a_student_keeps_its_embeddings():
    data = labelled_items()
    student = _random_student(data)
    wider = padded(student, 10)
    assert wider.projections[TEXT.value].rank == 10
    for m in (TEXT, IMAGE):
        np.testing.assert_allclose(_embed(wider, m, data.features[m]), _embed(student, m, data.features[m]), atol=1e-5)


def test_a_student_with_a_residual_is_refused():
    from mmalign.connectors.errors import ConfigError

    data = labelled_items()
    torch.manual_seed(0)
    student = build_student(data.dims(), TrainConfig(dim=32, rank=4), None, hidden=8)
    with pytest.raises(ConfigError, match="residual"):
        with_label_bridge(student, data, POOLED)


def _icon_sets(root, n_sets=2, per_set=70):
    """An @iconify/json folder of ``n_sets`` MIT sets, each of ``per_set`` two-word concepts in distinct colours."""
    import itertools
    import json

    from tests.conftest import TINY_WORDS

    folder = root / "node_modules" / "@iconify" / "json"
    (folder / "json").mkdir(parents=True)
    names = [f"{a}-{b}" for a, b in itertools.permutations(TINY_WORDS[3:], 2)][:per_set]
    collections = {}
    for s in range(n_sets):
        prefix = f"set{s}"
        collections[prefix] = {"name": prefix, "category": "UI 24px", "license": {"spdx": "MIT"}}
        icons = {}
        for k, name in enumerate(names):
            colour = f"#{(37 * k + 90 * s) % 256:02x}{(11 * k) % 256:02x}80"
            icons[name] = {"body": f'<path fill="{colour}" d="M{k % 9} 1h6v{1 + k % 13}H1z"/>'}
        body = {"prefix": prefix, "icons": icons, "aliases": {}, "categories": {}, "width": 16, "height": 16}
        (folder / "json" / f"{prefix}.json").write_text(json.dumps(body))
    (folder / "collections.json").write_text(json.dumps(collections))
    return root / "node_modules"


def test_pretraining_with_a_labelled_image_encoder_ships_the_bridged_student(tmp_path, tiny_preset):
    """`mmalign pretrain` on a tiny pool with a tiny labelled image encoder: the base bundle's student is the
    distilled one joined with the bridge, its baselines padded to that rank, and it loads and verifies."""
    from mmalign.connectors.datasets.pool import build_pool
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.encoders import registry
    from mmalign.plugin.workflows.pretrain import pretrain_bundle

    text = registry.get_encoder_spec("tiny-bert")
    registry.register_encoder(
        {
            "kind": "labelled_image",
            "name": "tiny-labels",
            "dim": 256 + text.dim,
            "backbone": {"kind": "timm_image", "name": "tiny-timm", "dim": 256, "arch": "test_efficientnet"},
            "text_encoder": text.model_dump(mode="json"),
        },
        replace=True,
    )
    registry.register_preset({"name": "tiny-labelled", "image": "tiny-labels", "text": "tiny-bert"}, replace=True)
    try:
        modules = _icon_sets(tmp_path)
        pool, _, _ = build_pool(tmp_path / "pool" / "pool.jsonl", modules=modules, echo=lambda line: None)
        cfg = TrainConfig(dim=16, rank=4, teacher_hidden=16, teacher_layers=1, teacher_epochs=1, epochs=1)
        lines = []
        report = pretrain_bundle(
            pool, tmp_path / "base", features_dir=tmp_path / "f", preset="tiny-labelled", cfg=cfg, echo=lines.append
        )
        bridge = report["training_summary"]["label_bridge"]
        assert bridge["distilled_rank"] == 4 and 1 <= bridge["rank"] <= 8  # the 16-d space has room for 8
        base = load_bundle(tmp_path / "base")
        ranks = {p.rank for p in base.student.projections.values()}
        assert ranks == {4 + bridge["rank"]} and base.config.ranks["image"] == 4 + bridge["rank"]
        assert {p.rank for p in base.baselines["cca"].projections.values()} == ranks
        assert any("joined with the label bridge" in line for line in lines)
    finally:
        registry.unregister_preset("tiny-labelled")
        registry.unregister_encoder("tiny-labels")
