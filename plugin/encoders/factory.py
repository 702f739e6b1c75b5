"""The torch encoder of each spec kind (ONNX Runtime encoders are built from these: :mod:`.onnx_runtime`)."""

from __future__ import annotations

from mmalign.plugin.encoders.base import Encoder
from mmalign.schemas.encoders import EncoderSpec

KINDS = {
    "timm_image": ("mmalign.plugin.encoders.timm_image", "TimmImageEncoder"),
    "open_clip_image": ("mmalign.plugin.encoders.open_clip", "OpenClipImageEncoder"),
    "open_clip_text": ("mmalign.plugin.encoders.open_clip", "OpenClipTextEncoder"),
    "hf_text": ("mmalign.plugin.encoders.hf_text", "HFTextEncoder"),
    "librosa_audio": ("mmalign.plugin.encoders.audio", "LibrosaAudioEncoder"),
    "whisper_ct2_audio": ("mmalign.plugin.encoders.audio", "WhisperCT2AudioEncoder"),
    "whisper_ct2_transcript": ("mmalign.plugin.encoders.transcribe", "WhisperTranscriptEncoder"),
    "aisfx_audio": ("mmalign.plugin.encoders.sfx", "AisfxAudioEncoder"),
    "concat_audio": ("mmalign.plugin.encoders.combined", "ConcatAudioEncoder"),
    "labelled_image": ("mmalign.plugin.encoders.labels", "LabelledImageEncoder"),
}


def build_kind(spec: EncoderSpec, device: str = "auto", **options) -> Encoder:
    """The encoder class of ``spec.kind``, loaded (on torch, or CTranslate2/librosa for those kinds); ``options``
    go to kinds that take more (``export_dir`` of a labelled image encoder's parts)."""
    import importlib

    module_name, class_name = KINDS[spec.kind]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(spec, device=device, **options)
