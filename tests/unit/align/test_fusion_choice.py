"""The student's fusion weights: learned, but replaced by equal ones where those find each validation item's
own fused vector better (a student whose weights drifted to one modality)."""

import numpy as np
import torch

from mmalign.plugin.align.closed_form import fit_cca
from mmalign.plugin.align.fit import choose_fusion, fused_score
from mmalign.plugin.align.student import build_student
from mmalign.plugin.features.paired import PairedFeatures
from mmalign.schemas import Modality, TrainConfig
from tests.unit.align.test_student import TINY, latent_catalog


def _cca_student(logits):
    """A CCA student of a catalog whose texts are noisy (its image and text embeddings of one item differ)."""
    data, _, _ = latent_catalog(n=300, latent=6, paired=1.0)
    feats = dict(data.features)
    feats[Modality.TEXT] = feats[Modality.TEXT] + 3.0 * np.random.default_rng(1).normal(size=feats[Modality.TEXT].shape)
    data = PairedFeatures.from_arrays(data.item_ids, feats, data.masks)
    train, val = data.subset(range(0, 200)), data.subset(range(200, 300))
    cfg = TrainConfig(**TINY)
    student = build_student(train.dims(), cfg, fit_cca(train, cfg.rank, 0.1, cfg.cca_power))
    with torch.no_grad():
        student.fusion.logits.copy_(torch.tensor(logits))
    return student, val


def test_fusion_drifted_to_one_modality_is_replaced_by_equal_weights():
    """Text weight 0.9997: each image finds its own item's fused vector among the others' far less often than
    with equal weights, so equal weights are kept, and said."""
    student, val = _cca_student([-4.0, 4.0])
    drifted = fused_score(student, val)
    lines = []
    record = choose_fusion(student, val, lines.append)
    assert record["kept"] == "equal"
    assert record["learned_weights"]["text"] > 0.99
    assert all(abs(w - 0.5) < 1e-6 for w in student.fusion.weights().values())
    assert fused_score(student, val) == record["val_fused_mrr"]["equal"] > drifted + 0.05
    assert "kept equal" in lines[0] and "text" in lines[0]


def test_learned_fusion_is_kept_unless_equal_weights_do_better():
    """Image 0.525 / text 0.475 (the texts are the noisy side) scores better than equal weights: kept as learned."""
    student, val = _cca_student([0.05, -0.05])
    learned = student.fusion.weights()
    record = choose_fusion(student, val, lambda line: None)
    assert record["kept"] == "learned"
    assert record["val_fused_mrr"]["learned"] >= record["val_fused_mrr"]["equal"]
    assert student.fusion.weights() == learned


def test_fused_rows_alone_are_the_fused_rows_of_the_whole_evaluation():
    """``cross_modal=False`` (what :func:`fused_score` asks for) leaves out the cross-modal rows and nothing else."""
    from mmalign.plugin.align.evaluation import evaluate_embedder
    from mmalign.plugin.align.trainer import TorchEmbedder

    student, val = _cca_student([0.3, -0.3])
    embedder = TorchEmbedder(student, "s")
    whole = evaluate_embedder("s", embedder, val)
    fused = evaluate_embedder("s", embedder, val, cross_modal=False)
    assert fused == [r for r in whole if r["target"] == "fused"] and len(fused) == 2
