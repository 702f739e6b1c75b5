"""The feature pipeline on tiny towers: counts, cache reuse, re-encoding, bad input in the dead letter."""

import json

import pytest
from click.testing import CliRunner

from mmalign.connectors.dead_letter import read_dead_letters
from mmalign.plugin.encoders.registry import get_encoder_spec
from mmalign.plugin.features.cache import FeatureCache
from mmalign.plugin.features.extract import extract_features
from mmalign.schemas import Modality


def _reasons(path):
    return {(r.item_id, r.modality.value if r.modality else None): r.reason for r in read_dead_letters(path)}


def test_counts_add_up_and_bad_items_are_dead_lettered(media_dir, tmp_path, tiny_preset):
    out = tmp_path / "features"
    report = extract_features(media_dir / "catalog.jsonl", out, preset=tiny_preset, device="cpu")
    assert (report.records_ok, report.records_invalid) == (9, 2)  # no-modality + bad JSON line
    image, text, audio = (report.modalities[m] for m in (Modality.IMAGE, Modality.TEXT, Modality.AUDIO))
    assert (image.present, image.encoded, image.failed) == (6, 3, 3)  # corrupt, missing, escape
    assert (text.present, text.encoded, text.failed) == (6, 6, 0)
    assert (audio.present, audio.encoded, audio.failed) == (4, 2, 2)  # empty, truncated
    for counts in (image, text, audio):
        assert counts.present == counts.encoded + counts.cached + counts.failed
    reasons = _reasons(report.dead_letter)
    assert "cannot decode image" in reasons[("corrupt-image", "image")]
    assert "file not found" in reasons[("missing-file", "image")]
    assert "outside the media root" in reasons[("escape", "image")]
    assert "empty" in reasons[("empty-audio", "audio")]
    assert ("truncated-audio", "audio") in reasons
    assert "no modality" in reasons[("no-modality", None)]
    assert any(k[0] is None and "invalid JSON" in v for k, v in reasons.items())
    assert len(read_dead_letters(report.dead_letter)) == report.records_invalid + sum(
        c.failed for c in report.modalities.values()
    )
    table = FeatureCache(out).load(Modality.IMAGE, get_encoder_spec("tiny-clip-image"))
    assert sorted(table.item_ids) == ["blue", "green", "red"] and table.features.shape == (3, 16)


def test_rerun_skips_cached_and_reencodes_changed(media_dir, tmp_path, tiny_preset):
    from tests.conftest import write_png

    out = tmp_path / "features"
    first = extract_features(media_dir / "catalog.jsonl", out, preset=tiny_preset, device="cpu")
    spec = get_encoder_spec("tiny-clip-image")
    before = FeatureCache(out).load(Modality.IMAGE, spec, ["red", "blue"]).features
    again = extract_features(media_dir / "catalog.jsonl", out, preset=tiny_preset, device="cpu")
    assert again.modalities[Modality.IMAGE].encoded == 0
    assert again.modalities[Modality.IMAGE].cached == first.modalities[Modality.IMAGE].encoded
    assert again.modalities[Modality.TEXT].cached == 6
    write_png(media_dir / "img" / "red.png", (10, 200, 10), size=(50, 50))  # the file changes
    third = extract_features(media_dir / "catalog.jsonl", out, preset=tiny_preset, device="cpu")
    assert (third.modalities[Modality.IMAGE].encoded, third.modalities[Modality.IMAGE].cached) == (1, 2)
    after = FeatureCache(out).load(Modality.IMAGE, spec, ["red", "blue"]).features
    assert not (after[0] == before[0]).all() and (after[1] == before[1]).all()


def test_modality_filter_and_unknown_weights_override(media_dir, tmp_path, tiny_preset):
    report = extract_features(media_dir / "catalog.jsonl", tmp_path / "f", preset=tiny_preset, modalities=["text"])
    assert list(report.modalities) == [Modality.TEXT]
    with pytest.raises(ValueError, match=r"^weights \(CLI: --weights\) names encoders not used by preset"):
        extract_features(media_dir / "catalog.jsonl", tmp_path / "f", preset=tiny_preset, weights={"vit": "x"})


def test_nan_features_are_dead_lettered(media_dir, tmp_path, tiny_preset):
    import numpy as np

    from mmalign.plugin.encoders import build_encoder

    def build_nan(spec, device):
        encoder = build_encoder(spec, device=device)
        original = encoder._encode_batch

        def poisoned(batch):
            out = np.asarray(original(batch), dtype=np.float32)
            out[0, 0] = np.nan
            return out

        encoder._encode_batch = poisoned
        return encoder

    report = extract_features(
        media_dir / "catalog.jsonl",
        tmp_path / "f",
        preset=tiny_preset,
        modalities=["text"],
        batch_size=100,
        build_encoder=build_nan,
    )
    assert report.modalities[Modality.TEXT].failed == 1
    assert any("NaN" in r.reason for r in read_dead_letters(report.dead_letter))


def test_cli_features_json_and_table(media_dir, tmp_path, tiny_preset):
    from mmalign.plugin.cli import main

    out = tmp_path / "features"
    result = CliRunner().invoke(
        main,
        [
            "features",
            str(media_dir / "catalog.jsonl"),
            "--preset",
            tiny_preset,
            "--out",
            str(out),
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert result.exit_code == 3, result.output  # the catalog has 2 invalid records: reported, then status 3
    data = json.loads(result.output)
    assert data["modalities"]["image"]["encoded"] == 3 and data["records_invalid"] == 2
    table = CliRunner().invoke(
        main, ["features", str(media_dir / "catalog.jsonl"), "--preset", tiny_preset, "--out", str(out)]
    )
    assert table.exit_code == 3 and "cached" in table.output and "dead_letter" in table.output  # 2 bad records
    bad = CliRunner().invoke(
        main, ["features", str(media_dir / "catalog.jsonl"), "--preset", "nope", "--out", str(out)]
    )
    assert bad.exit_code != 0 and "available" in bad.output
