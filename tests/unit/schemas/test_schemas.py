import json

import pytest
from pydantic import ValidationError

from mmalign.schemas import CatalogItem, Interaction, Modality, Preset, StoreConfig
from mmalign.schemas.encoders import ENCODER_SPEC_ADAPTER


def test_item_needs_a_modality_and_names_itself():
    with pytest.raises(ValidationError, match="item 'x' has no modality"):
        CatalogItem(id="x", metadata={"a": 1})


def test_blank_fields_count_as_missing():
    item = CatalogItem(id="x", text="  ", image="a.png")
    assert item.text is None and item.modalities == [Modality.IMAGE]


def test_item_rejects_unknown_fields_and_padded_ids():
    with pytest.raises(ValidationError, match="extra"):
        CatalogItem(id="x", text="t", colour="red")
    with pytest.raises(ValidationError, match="whitespace"):
        CatalogItem(id=" x", text="t")


def test_interaction_weight_must_be_finite():
    assert Interaction(user_id="u", item_id="i", weight=-1).weight == -1
    with pytest.raises(ValidationError, match="finite"):
        Interaction(user_id="u", item_id="i", weight=float("nan"))


def test_store_config_one_target():
    assert StoreConfig().resolved_path.endswith("qdrant")
    assert StoreConfig(url="http://localhost:6333", api_key="k", prefer_grpc=True).is_server
    with pytest.raises(ValidationError, match="not both"):
        StoreConfig(path=":memory:", url="http://localhost:6333")
    with pytest.raises(ValidationError, match="server"):
        StoreConfig(path=":memory:", api_key="k")


def test_encoder_spec_discriminator_and_dim_checks():
    spec = ENCODER_SPEC_ADAPTER.validate_python({"kind": "librosa_audio", "name": "a", "dim": 168})
    assert spec.modality is Modality.AUDIO
    with pytest.raises(ValidationError, match="2\\*\\(n_mels\\+n_mfcc\\)"):
        ENCODER_SPEC_ADAPTER.validate_python({"kind": "librosa_audio", "name": "a", "dim": 10})
    with pytest.raises(ValidationError, match="does not match any of the expected tags|kind"):
        ENCODER_SPEC_ADAPTER.validate_python({"kind": "nope", "name": "a", "dim": 1})
    with pytest.raises(ValidationError):
        ENCODER_SPEC_ADAPTER.validate_python({"kind": "hf_text", "name": "a", "dim": 3, "typo": 1})
    with pytest.raises(ValidationError, match="frozen"):
        spec.dim = 3


def test_preset_needs_an_encoder():
    with pytest.raises(ValidationError, match="names no encoder"):
        Preset(name="empty")


def test_schema_export_writes_valid_json(tmp_path):
    from click.testing import CliRunner

    from mmalign.plugin.cli import main

    result = CliRunner().invoke(main, ["schemas", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "catalog_item.schema.json" in files and "encoder_spec.schema.json" in files
    item_schema = json.loads((tmp_path / "catalog_item.schema.json").read_text())
    assert set(item_schema["properties"]) >= {"id", "text", "image", "audio", "metadata"}
    spec_schema = json.loads((tmp_path / "encoder_spec.schema.json").read_text())
    assert "discriminator" in json.dumps(spec_schema)


def test_transcript_spec_dim_counts_the_pooled_state():
    import pytest

    from mmalign.plugin.encoders.registry import get_encoder_spec
    from mmalign.schemas.encoders import WhisperTranscriptSpec

    one_pass = get_encoder_spec("speech-whisper-1pass")
    assert one_pass.dim == one_pass.text_encoder.dim + 1 + one_pass.state_width == 769
    fields = one_pass.model_dump()
    with pytest.raises(ValueError, match="dim must be 769"):
        WhisperTranscriptSpec(**{**fields, "dim": 385})
    assert WhisperTranscriptSpec(**{**fields, "state_width": 0, "dim": 385}).dim == 385


def test_a_record_reads_push_restore_and_rebuild_fields_as_typed_and_writes_back_the_same_json():
    from mmalign.schemas.store import CollectionRecord, PushProgress

    extra = {
        "alias": "c",
        "state": "damaged",
        "push": {"source": "edge:/s:c__v1", "next_offset": "17", "points": 5, "done": False},
        "damage": ["point 3: no fused vector"],
        "replaced_by": "c__v3",
        "rebuilt_from": "c__v1",
        "restoring": "ab12",
        "restored_from": "/backups/c.tar",
        "operator_note": "kept",
    }
    stored = {"dim": 8, "bundle_id": "b", "schema_version": 1, "extra": extra}
    record = CollectionRecord.from_stored("c__v2", stored)
    assert record.push == PushProgress(source="edge:/s:c__v1", next_offset="17", points=5)
    assert (record.damage, record.replaced_by, record.rebuilt_from) == (["point 3: no fused vector"], "c__v3", "c__v1")
    assert (record.restoring, record.restored_from) == ("ab12", "/backups/c.tar")
    written = record.stored()
    assert {k: written["extra"][k] for k in extra} == extra  # the file format is unchanged
    assert CollectionRecord.from_stored("c__v2", written) == record
    with pytest.raises(ValidationError, match="damage"):
        record.updated(damage="broken")  # a list of problems, not a string


def test_a_copy_carries_the_records_fields_less_those_dropped():
    from mmalign.schemas.store import CollectionRecord

    record = CollectionRecord(name="c__v1", dim=4, bundle_id="b", state="damaged", damage=["x"], operator_note=1)
    carried = record.carried(drop=("state", "damage"))
    assert carried["operator_note"] == 1 and "state" not in carried and "damage" not in carried
    assert not {"name", "dim", "bundle_id", "schema_version"} & set(carried)
    assert CollectionRecord(name="c__v2", dim=4, **carried).operator_note == 1
