"""A bundle is verified at load: replaced, truncated or edited files are refused by name, before any write."""

import json
import shutil

import pytest

from mmalign.connectors.errors import BundleError
from mmalign.connectors.store import VectorStore
from mmalign.plugin.align.bundle import load_bundle
from mmalign.schemas import StoreConfig
from tests.unit.index.test_ingest_search import _ingest


def _copy(trained, tmp_path, name="bundle"):
    base, _ = trained
    shutil.copytree(base / name, tmp_path / name)
    return tmp_path / name


def test_another_models_weights_of_the_same_shape_are_refused(trained, tmp_path):
    bundle = _copy(trained, tmp_path)
    shutil.copy(trained[0] / "bundle2" / "student.safetensors", bundle / "student.safetensors")
    with pytest.raises(BundleError, match=r"student\.safetensors.*does not match the sha256"):
        load_bundle(bundle)


def test_truncated_weights_are_refused_by_name(trained, tmp_path):
    bundle = _copy(trained, tmp_path)
    data = (bundle / "teacher.safetensors").read_bytes()
    (bundle / "teacher.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"teacher\.safetensors"):
        load_bundle(bundle)


def test_edited_config_is_refused_and_nothing_is_written(trained, tmp_path):
    bundle = _copy(trained, tmp_path)
    config = json.loads((bundle / "config.json").read_text())
    config["dim"] = 16
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="config.json.*was edited"):
        load_bundle(bundle)
    with VectorStore(StoreConfig(path=":memory:")) as store:
        with pytest.raises(BundleError):
            _ingest(trained, store, bundle=bundle)
        assert store.list_collections() == []  # no empty collection of the wrong size was created
        _ingest(trained, store)  # the correct bundle still works on this store
        assert store.count("items") > 0


def test_missing_weight_file_is_named(trained, tmp_path):
    bundle = _copy(trained, tmp_path)
    (bundle / "baselines.safetensors").unlink()
    with pytest.raises(BundleError, match="missing baselines.safetensors"):
        load_bundle(bundle)


def test_intact_bundle_loads_and_ids_are_content_hashes(trained, tmp_path):
    bundle = _copy(trained, tmp_path)
    loaded = load_bundle(bundle)
    config = json.loads((bundle / "config.json").read_text())
    assert set(config["files"]) == {"student.safetensors", "teacher.safetensors", "baselines.safetensors"}
    assert loaded.bundle_id == config["bundle_id"] and len(loaded.bundle_id) == 16
    assert not list(bundle.glob("*.tmp"))
