"""Frozen encoders, one per spec kind, all with the same ``encode`` signature."""

from __future__ import annotations

from mmalign.plugin.encoders.base import Encoder
from mmalign.plugin.encoders.registry import get_encoder_spec

_KINDS = {
    "timm_image": ("mmalign.plugin.encoders.timm_image", "TimmImageEncoder"),
    "open_clip_image": ("mmalign.plugin.encoders.open_clip", "OpenClipImageEncoder"),
    "open_clip_text": ("mmalign.plugin.encoders.open_clip", "OpenClipTextEncoder"),
    "hf_text": ("mmalign.plugin.encoders.hf_text", "HFTextEncoder"),
    "librosa_audio": ("mmalign.plugin.encoders.audio", "LibrosaAudioEncoder"),
    "whisper_ct2_audio": ("mmalign.plugin.encoders.audio", "WhisperCT2AudioEncoder"),
    "whisper_ct2_transcript": ("mmalign.plugin.encoders.transcribe", "WhisperTranscriptEncoder"),
    "aisfx_audio": ("mmalign.plugin.encoders.sfx", "AisfxAudioEncoder"),
    "concat_audio": ("mmalign.plugin.encoders.combined", "ConcatAudioEncoder"),
}


def build_encoder(spec_or_name, device: str = "auto", *, export_dir=None) -> Encoder:
    """Load the encoder a spec (or registered name) describes. A spec with ``runtime: onnx`` runs on ONNX
    Runtime, exported at first use into ``export_dir`` (default: :func:`.onnx_runtime.export_dir`)."""
    import importlib

    spec = get_encoder_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    if getattr(spec, "runtime", "torch") == "onnx":
        from mmalign.plugin.encoders.onnx_runtime import encoder_class

        return encoder_class(spec)(spec, device=device, export_root=export_dir)
    module_name, class_name = _KINDS[spec.kind]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(spec, device=device)


__all__ = ["Encoder", "build_encoder"]
