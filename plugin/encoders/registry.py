"""Registry of encoder specs and presets, scanned from JSON at import (no weights loaded).

``list_encoders()`` and ``get_embedding_size()`` answer from the specs alone, so a Qdrant
collection can be sized before any model is built. Tests register tiny towers with
:func:`register_encoder`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import ValidationError

from mmalign.connectors.errors import RegistryError
from mmalign.schemas import EncoderInfo, Preset
from mmalign.schemas.encoders import ENCODER_SPEC_ADAPTER, EncoderSpec

SPEC_DIR = Path(__file__).parent / "specs"
DEFAULT_PRESET = "offline-small"

_ENCODERS: dict[str, EncoderSpec] = {}
_PRESETS: dict[str, Preset] = {}


def _scan() -> None:
    for file in sorted((SPEC_DIR / "encoders").glob("*.json")):
        try:
            register_encoder(ENCODER_SPEC_ADAPTER.validate_json(file.read_text()))
        except ValidationError as exc:
            raise RuntimeError(f"built-in encoder spec {file.name} is invalid: {exc}") from exc
    for file in sorted((SPEC_DIR / "presets").glob("*.json")):
        register_preset(Preset.model_validate_json(file.read_text()))


def register_encoder(spec: EncoderSpec | dict, *, replace: bool = False) -> EncoderSpec:
    """Add a spec (a model or its dict form). Re-registering a name needs ``replace=True``."""
    if isinstance(spec, dict):
        spec = ENCODER_SPEC_ADAPTER.validate_python(spec)
    if spec.name in _ENCODERS and not replace and _ENCODERS[spec.name] != spec:
        raise RegistryError(f"encoder {spec.name!r} is already registered; pass replace=True to override it")
    _ENCODERS[spec.name] = spec
    return spec


def unregister_encoder(name: str) -> None:
    _ENCODERS.pop(name, None)


def register_preset(preset: Preset | dict, *, replace: bool = False) -> Preset:
    if isinstance(preset, dict):
        preset = Preset.model_validate(preset)
    if preset.name in _PRESETS and not replace and _PRESETS[preset.name] != preset:
        raise RegistryError(f"preset {preset.name!r} is already registered; pass replace=True to override it")
    _PRESETS[preset.name] = preset
    return preset


def unregister_preset(name: str) -> None:
    _PRESETS.pop(name, None)


def list_encoders() -> list[str]:
    return sorted(_ENCODERS)


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def get_encoder_spec(name: str) -> EncoderSpec:
    try:
        return _ENCODERS[name]
    except KeyError:
        raise RegistryError(f"encoder {name!r} is not registered; available: {list_encoders()}") from None


def get_preset(name: str) -> Preset:
    try:
        preset = _PRESETS[name]
    except KeyError:
        raise RegistryError(f"preset {name!r} is not registered; available: {list_presets()}") from None
    for modality in ("image", "text", "audio"):
        encoder = getattr(preset, modality)
        if encoder is not None:
            spec = get_encoder_spec(encoder)
            if spec.modality.value != modality:
                raise RegistryError(
                    f"preset {name!r}: encoder {encoder!r} is a {spec.modality.value} encoder, not {modality}"
                )
    return preset


def get_embedding_size(name: str) -> int:
    """Output size of a registered encoder, from its spec (nothing is loaded)."""
    return get_encoder_spec(name).dim


#: Spec kinds that run on ONNX Runtime as well as on torch (``runtime``, ``precision``: schemas/encoders.py).
ONNX_KINDS = ("timm_image", "hf_text")
_RUNTIME_DEFAULTS = {"runtime": "torch", "precision": "fp32"}
#: Fields added to a spec kind after features had been cached with it: at these values they give the features
#: of before, so they are left out of the id, and caches and bundles made before stay valid.
_LATER_FIELDS: dict[str, dict[str, object]] = {
    "whisper_ct2_transcript": {"state_width": 0},
    **{kind: dict(_RUNTIME_DEFAULTS) for kind in ONNX_KINDS},
}
#: Fields that never change the features (a choice made when the spec is used): never part of the id.
_SELECTION_FIELDS: dict[str, tuple[str, ...]] = {kind: ("onnx_precision",) for kind in ONNX_KINDS}


def _without_later_defaults(body):
    if isinstance(body, dict):
        later = _LATER_FIELDS.get(body.get("kind"), {})
        selection = _SELECTION_FIELDS.get(body.get("kind"), ())
        return {
            k: _without_later_defaults(v)
            for k, v in body.items()
            if not (k in later and v == later[k]) and k not in selection
        }
    if isinstance(body, list):
        return [_without_later_defaults(v) for v in body]
    return body


def runtime_label(spec: EncoderSpec) -> str | None:
    """``onnx-int8``, ``onnx-fp32``; None for an encoder on torch (or a kind without runtimes). A labelled image
    encoder runs where its backbone runs."""
    if spec.kind == "labelled_image":
        return runtime_label(spec.backbone)
    runtime = getattr(spec, "runtime", "torch")
    return None if runtime == "torch" else f"{runtime}-{spec.precision}"


def encoder_id(spec: EncoderSpec) -> str:
    """``name:hash`` — the hash covers everything that changes the features (not the description). An encoder
    that runs on another runtime than torch says so in the name part too: ``minilm-l6@onnx-int8:hash``."""
    body = _without_later_defaults(spec.model_dump(mode="json", exclude={"description"}))
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    label = runtime_label(spec)
    return f"{spec.name}:{digest}" if label is None else f"{spec.name}@{label}:{digest}"


def with_weights(spec: EncoderSpec, weights: str) -> EncoderSpec:
    """The same spec with other weights (a local path, a package tag or a hub tag); for a labelled image encoder,
    its backbone's (whose checkpoint also holds the classifier head)."""
    if spec.kind == "labelled_image":
        return spec.model_copy(update={"backbone": spec.backbone.model_copy(update={"weights": weights})})
    return spec.model_copy(update={"weights": weights})


def encoder_info(name: str) -> EncoderInfo:
    spec = get_encoder_spec(name)
    return EncoderInfo(
        name=spec.name,
        modality=spec.modality,
        kind=spec.kind,
        dim=spec.dim,
        weights=spec.backbone.weights if spec.kind == "labelled_image" else spec.weights,
        encoder_id=encoder_id(spec),
        description=spec.description,
    )


_scan()
