"""Alignment: known-answer recovery, fusion, bundles (round trip, refusal), train/eval CLI on tiny towers."""

import json

import numpy as np
import pytest
import torch

from mmalign.plugin.features.paired import PairedFeatures
from mmalign.plugin.workflows.train import fit_alignment
from mmalign.schemas import Modality, TrainConfig

IMAGE, TEXT, AUDIO = Modality.IMAGE, Modality.TEXT, Modality.AUDIO


def synthetic(n=600, latent=12, dims=(48, 32, 24), noise=0.05, audio_fraction=0.5, seed=0):
    """Paired features related by hidden random linear maps (+ noise); audio only for some items."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, latent))
    feats = {
        m: z @ rng.normal(size=(latent, d)) + noise * rng.normal(size=(n, d)) + rng.normal(size=d) * 3
        for m, d in zip((IMAGE, TEXT, AUDIO), dims)
    }
    masks = {IMAGE: np.ones(n, bool), TEXT: np.ones(n, bool), AUDIO: rng.random(n) < audio_fraction}
    return PairedFeatures.from_arrays([f"item-{i:04d}" for i in range(n)], feats, masks)


SMALL = dict(
    dim=32, rank=12, teacher_hidden=64, teacher_layers=1, epochs=40, teacher_epochs=40, patience=5, batch_size=128
)


def _metric(results, model, query, target, key="recall@1"):
    return next(r[key] for r in results if (r["model"], r["query"], r["target"]) == (model, query, target))


def test_known_answer_hidden_linear_maps_are_recovered():
    result = fit_alignment(synthetic(), TrainConfig(**SMALL))
    res = result.results
    for query, target in ((TEXT, IMAGE), (IMAGE, TEXT), (AUDIO, IMAGE), (IMAGE, AUDIO)):
        assert _metric(res, "student", query.value, target.value) >= 0.95, (query, target)
    # unaligned per-modality PCA is near chance (1/120 test items)
    assert _metric(res, "svd", "text", "image") < 0.1 and _metric(res, "svd", "image", "text") < 0.1
    assert _metric(res, "student", "text", "fused") >= 0.95


def test_student_is_low_rank_and_much_smaller_than_teacher():
    result = fit_alignment(synthetic(n=300), TrainConfig(**{**SMALL, "epochs": 2, "teacher_epochs": 2}))
    student, teacher = result.models["student"], result.models["teacher"]
    assert student.projections["image"].V.shape == (48, 12) and student.projections["image"].U.shape == (32, 12)
    assert student.n_parameters() * 8 <= teacher.n_parameters()


def test_fusion_with_missing_modalities():
    from mmalign.plugin.align.student import Fusion

    fusion = Fusion([IMAGE, TEXT, AUDIO])
    e = {m: torch.nn.functional.normalize(torch.randn(3, 8), dim=-1) for m in (IMAGE, TEXT, AUDIO)}
    masks = {
        IMAGE: torch.tensor([True, False, True]),
        TEXT: torch.tensor([True, True, False]),
        AUDIO: torch.tensor([False, False, False]),
    }
    fused = fusion(e, masks)
    assert torch.allclose(fused.norm(dim=1), torch.ones(3))
    assert torch.allclose(fused[1], e[TEXT][1], atol=1e-6)  # one modality: its own vector
    assert torch.allclose(fused[2], e[IMAGE][2], atol=1e-6)
    both = torch.nn.functional.normalize(e[IMAGE][0] + e[TEXT][0], dim=0)
    assert torch.allclose(fused[0], both, atol=1e-6)  # equal weights at init, audio ignored
    with pytest.raises(ValueError, match="no modality"):
        fusion(e, {m: torch.zeros(3, dtype=torch.bool) for m in e})
    concat = Fusion([IMAGE, TEXT, AUDIO], "concat")(e, masks)
    assert concat.shape == (3, 24) and torch.allclose(concat.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        Fusion([IMAGE], "sum")


def _write_bundle(tmp_path):
    from mmalign.plugin.align.bundle import save_bundle
    from mmalign.plugin.encoders.registry import get_encoder_spec

    data = synthetic(n=200)
    cfg = TrainConfig(**{**SMALL, "epochs": 3, "teacher_epochs": 3})
    result = fit_alignment(data, cfg)
    specs = {
        IMAGE: get_encoder_spec("efficientnet-lite0").model_copy(update={"dim": 48}),
        TEXT: get_encoder_spec("minilm-l6").model_copy(update={"dim": 32}),
        AUDIO: get_encoder_spec("logmel-stats").model_copy(update={"dim": 24, "n_mels": 12, "n_mfcc": 0}),
    }
    bundle_id = save_bundle(
        tmp_path / "bundle",
        specs=specs,
        cfg=cfg,
        student=result.models["student"],
        teacher=result.models["teacher"],
        baselines={k: result.models[k] for k in ("svd", "cca")},
        summary={"split": result.split, "metrics": {"results": result.results}},
    )
    return data, result, specs, bundle_id


def test_bundle_round_trip_gives_identical_outputs(tmp_path):
    from mmalign.plugin.align.bundle import load_bundle
    from mmalign.plugin.align.trainer import TorchEmbedder

    data, result, specs, bundle_id = _write_bundle(tmp_path)
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.bundle_id == bundle_id and bundle.dim == 32
    for name, original in (
        ("student", result.models["student"]),
        ("teacher", result.models["teacher"]),
        ("cca", result.models["cca"]),
    ):
        loaded = {"student": bundle.student, "teacher": bundle.teacher, "cca": bundle.baselines.get("cca")}[name]
        for m in (IMAGE, TEXT, AUDIO):
            x = data.features[m][:10]
            np.testing.assert_array_equal(
                TorchEmbedder(original, name).embed(m, x), TorchEmbedder(loaded, name).embed(m, x)
            )
        np.testing.assert_array_equal(TorchEmbedder(original, name).fuse(data), TorchEmbedder(loaded, name).fuse(data))
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["schema_version"] == 2 and config["encoders"]["image"]["encoder_id"].startswith("efficientnet")
    assert not list((tmp_path / "bundle").glob("*.pt")) and not list((tmp_path / "bundle").glob("*.pkl"))


def test_bundle_refuses_other_encoders_and_schema_versions(tmp_path):
    from mmalign.plugin.align.bundle import BundleError, load_bundle
    from mmalign.plugin.encoders.registry import get_encoder_spec

    _, _, specs, _ = _write_bundle(tmp_path)
    bundle = load_bundle(tmp_path / "bundle")
    bundle.check_encoders(specs)
    other = {IMAGE: get_encoder_spec("clip-vit-b-32-image")}
    with pytest.raises(BundleError, match="trained on image encoder efficientnet-lite0:.*not clip-vit-b-32-image"):
        bundle.check_encoders(other)
    config_file = tmp_path / "bundle" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "schema_version": 99}))
    with pytest.raises(BundleError, match=r"schema version 99; this mmalign reads versions \[1, 2\]"):
        load_bundle(tmp_path / "bundle")
    with pytest.raises(BundleError, match="no config.json"):
        load_bundle(tmp_path)


def test_train_and_eval_cli_on_tiny_towers(tmp_path, tiny_preset):
    """End to end on a catalog of tiny media: features -> bundle -> eval JSON in the documented shape."""
    from click.testing import CliRunner

    from mmalign.plugin.cli import main
    from tests.conftest import write_png

    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "big", "small", "frog", "cat", "dog", "car", "tree", "house", "coin"]
    root = tmp_path / "cat"
    lines = []
    for i in range(40):
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        write_png(root / f"{i}.png", color, size=(24, 24))
        text = " ".join(rng.choice(words, 3))
        lines.append(json.dumps({"id": f"item{i}", "text": f"a {text}", "image": f"{i}.png"}))
    (root / "catalog.jsonl").write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    args = ["--features", str(tmp_path / "features"), "--preset", tiny_preset]
    result = runner.invoke(
        main,
        [
            "train",
            str(root / "catalog.jsonl"),
            "--out",
            str(tmp_path / "b"),
            "--dim",
            "8",
            "--rank",
            "4",
            "--epochs",
            "2",
            "--device",
            "cpu",
            *args,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "held-out test items: 8" in result.output and "student" in result.output
    result = runner.invoke(
        main, ["eval", "--bundle", str(tmp_path / "b"), "--features", str(tmp_path / "features"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report) == {"bundle_id", "n_items", "results"} and report["n_items"] == 8
    row = report["results"][0]
    assert set(row) == {"model", "query", "target", "recall@1", "recall@5", "recall@10", "mrr", "n_queries"}
    assert {(r["model"], r["query"], r["target"]) for r in report["results"]} >= {
        ("student", "text", "image"),
        ("student", "image", "text"),
        ("cca", "text", "fused"),
        ("teacher", "image", "fused"),
    }


def test_train_command_defaults_are_the_library_defaults():
    """`mmalign train` and `train_bundle(cfg=TrainConfig())` train the same model unless told otherwise."""
    from mmalign.plugin.cli.train import train
    from mmalign.schemas import TrainConfig

    defaults = {p.name: p.default for p in train.params}
    library = TrainConfig()
    for name in ("dim", "rank", "epochs", "seed", "test_fraction", "init", "fusion"):
        assert defaults[name] == getattr(library, name), name
