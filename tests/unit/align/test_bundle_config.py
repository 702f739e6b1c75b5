"""The bundle's config.json is a typed BundleConfig: old files still load with their ids, the model
round-trips to the JSON its id hashes, and its JSON Schema is exported."""

import hashlib
import json

import pytest

from mmalign.connectors.errors import BundleError
from mmalign.plugin.align.bundle import WEIGHT_FILES, load_bundle, read_config_file, save_bundle
from mmalign.schemas import EXPORTED_MODELS, BundleConfig, TrainConfig
from tests.unit.align.test_student import IMAGE, TEXT, TINY, latent_catalog


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from mmalign.plugin.align.fit import fit_alignment
    from mmalign.plugin.encoders.registry import get_encoder_spec

    data, _, _ = latent_catalog(n=100, paired=1.0)
    cfg = TrainConfig(**{**TINY, "epochs": 1, "teacher_epochs": 1})
    result = fit_alignment(data, cfg)
    specs = {
        IMAGE: get_encoder_spec("efficientnet-lite0").model_copy(update={"dim": 40}),
        TEXT: get_encoder_spec("minilm-l6").model_copy(update={"dim": 24}),
    }
    path = tmp_path_factory.mktemp("bundle") / "b"
    metrics = {"split": "test", "n_items": len(result.test), "results": result.results}
    save_bundle(
        path,
        specs=specs,
        cfg=cfg,
        student=result.models["student"],
        teacher=result.models["teacher"],
        baselines={"cca": result.models["cca"]},
        summary={"split": result.split, "metrics": metrics, "training_summary": result.training_summary},
    )
    return path


def test_a_written_config_reads_as_a_bundle_config_and_round_trips_to_the_same_json(written):
    raw, config = read_config_file(written)
    assert isinstance(config, BundleConfig)
    assert config.to_json_dict() == raw
    assert BundleConfig.model_validate_json(json.dumps(raw)) == config
    assert config.encoders["image"].dim == 40 and config.teacher is not None
    assert config.test_ids() == raw["split"]["test_ids"] and config.student_recall() is not None


def test_a_schema_version_1_file_still_loads_with_its_id(written, tmp_path):
    """Version 1 had no per-file digests: one id over the weight bytes and the config."""
    import shutil

    old = tmp_path / "v1"
    shutil.copytree(written, old)
    raw = json.loads((old / "config.json").read_text())
    for key in ("files", "student", "bundle_id"):
        raw.pop(key)
    raw["schema_version"] = 1
    digest = hashlib.sha256()
    for name in WEIGHT_FILES:
        if (old / name).exists():
            digest.update((old / name).read_bytes())
    digest.update(json.dumps(raw, sort_keys=True).encode())
    raw["bundle_id"] = digest.hexdigest()[:16]
    (old / "config.json").write_text(json.dumps(raw))
    bundle = load_bundle(old)
    assert bundle.bundle_id == raw["bundle_id"] and bundle.config.schema_version == 1
    assert bundle.config.student is None and bundle.config.files == {}


def test_a_config_with_an_unknown_field_is_refused_by_name(written, tmp_path):
    import shutil

    from mmalign.plugin.align.bundle import _config_digest

    odd = tmp_path / "odd"
    shutil.copytree(written, odd)
    raw = json.loads((odd / "config.json").read_text())
    raw["surprise"] = 1
    raw["bundle_id"] = _config_digest(raw)
    (odd / "config.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="(?s)BundleConfig schema.*surprise"):
        load_bundle(odd)


def test_schemas_export_includes_the_bundle_config():
    assert EXPORTED_MODELS["bundle_config"] is BundleConfig
