"""The shipped base bundle: it loads from the package with no network, its files are verified against
the sha256 in its config, and ``base`` names it wherever a bundle is loaded."""

import shutil

import pytest

from mmalign.connectors.errors import BundleError
from mmalign.plugin.align.bundle import load_bundle, resolve_bundle, shipped_bundle_dir


def test_base_names_the_shipped_bundle_and_it_loads_with_its_pool_record(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_bundle("base") == shipped_bundle_dir("base")
    bundle = load_bundle("base")
    assert bundle.teacher is not None and set(m.value for m in bundle.modalities) == {"image", "text"}
    pool = bundle.config.pool
    assert pool is not None and pool.n_pairs == sum(s.pairs for s in pool.sources) > 0
    excluded = " ".join(pool.excluded)
    for catalog in ("papirus", "tuxpaint", "wesnoth"):  # every evaluation is leave-catalog-out
        assert catalog in excluded
        assert not any(catalog in s.source for s in pool.sources)
    assert "Emoji" in excluded
    assert set(bundle.config.files) == {"student.safetensors", "teacher.safetensors", "baselines.safetensors"}
    size = sum(f.stat().st_size for f in shipped_bundle_dir("base").iterdir())
    assert size <= 30 * 2**20


def test_a_damaged_copy_of_the_base_bundle_is_refused_by_name(tmp_path):
    copy = tmp_path / "base"
    shutil.copytree(shipped_bundle_dir("base"), copy)
    data = bytearray((copy / "teacher.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "teacher.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"teacher\.safetensors.*sha256"):
        load_bundle(copy)


def test_a_folder_called_base_is_not_shadowed_by_the_shipped_one(tmp_path, monkeypatch):
    shutil.copytree(shipped_bundle_dir("base"), tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    assert resolve_bundle("base").resolve() == (tmp_path / "base").resolve()


def test_the_shipped_base_was_made_with_the_default_presets_encoders_and_holds_the_label_bridge():
    """So that `mmalign train CATALOG --init base` works with the default preset, and the base's zero-shot student
    reads the image's label part."""
    from mmalign.plugin.encoders.registry import DEFAULT_PRESET
    from mmalign.plugin.features.extract import preset_specs

    bundle = load_bundle("base")
    specs = preset_specs(DEFAULT_PRESET, None)
    bundle.check_encoders({m: specs[m] for m in bundle.modalities})
    bridge = bundle.config.training_summary["label_bridge"]
    assert bridge["rank"] > 0 and bundle.config.ranks["image"] == bridge["distilled_rank"] + bridge["rank"]
