"""Which runtime an encoder runs on: PyTorch or ONNX Runtime, chosen per spec before anything is loaded.

The runtime and the precision are fields of the spec, so they are part of the encoder id: features cached
by one runtime are never read as another's. :func:`with_runtime` turns a spec (from a preset or a bundle)
into the spec that runs, and :func:`interchangeable` says when features of one may stand for features of
the other: the same spec but for runtime and precision. That is allowed because an ONNX export is only
used when its features agree with torch's (per-item cosine >= ``AGREEMENT_MIN`` over probe inputs, checked
when it is exported; :mod:`.onnx_runtime`), and the agreement and recall on real catalogs are measured by
``python -m benchmarks.runtimes`` (docs/encoders.md).

``auto`` (the default; ``$MMALIGN_RUNTIME`` overrides it) runs torch on a GPU and ONNX Runtime on a CPU,
where it was measured faster at the same quality, each spec at its own ``onnx_precision``; torch where the
``onnx`` extra is not installed.
"""

from __future__ import annotations

import os

from mmalign.connectors.errors import ConfigError
from mmalign.plugin.encoders.registry import ONNX_KINDS, encoder_id
from mmalign.schemas.encoders import ENCODER_SPEC_ADAPTER, EncoderSpec

RUNTIME_CHOICES = ("auto", "torch", "onnx")
#: Environment override of the default runtime (``MMALIGN_RUNTIME=torch``).
RUNTIME_ENV = "MMALIGN_RUNTIME"
DEFAULT_RUNTIME = "auto"
#: Features of an ONNX export and of torch may stand for each other when the per-item cosine between them is
#: at least this, for every probe input (the export is refused otherwise).
AGREEMENT_MIN = 0.99


def resolve_runtime(runtime: str | None = None, device: str = "auto") -> str:
    """``torch`` or ``onnx`` for ``runtime`` (None: ``$MMALIGN_RUNTIME``, else auto) on ``device``."""
    if runtime is None:
        runtime = os.environ.get(RUNTIME_ENV) or DEFAULT_RUNTIME
    if runtime not in RUNTIME_CHOICES:
        raise ConfigError(f"unknown runtime {runtime!r}; valid: {list(RUNTIME_CHOICES)}")
    if runtime != "auto":
        return runtime
    base = str(device).split(":")[0]
    if base in ("cuda", "mps") or not onnx_available():
        return "torch"
    if base == "cpu":
        return "onnx"
    from mmalign.plugin.encoders.device import select_device

    return "onnx" if select_device(device).type == "cpu" else "torch"


def onnx_available() -> bool:
    """True where onnxruntime and onnx are installed (the ``onnx`` extra); auto falls back to torch without."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def supports_runtime(spec: EncoderSpec) -> bool:
    return spec.kind in ONNX_KINDS


def with_runtime(
    spec: EncoderSpec, runtime: str | None = None, device: str = "auto", precision: str | None = None
) -> EncoderSpec:
    """The spec that runs on ``runtime`` (see :func:`resolve_runtime`). On onnx, ``precision`` (default: the
    spec's ``onnx_precision``); on torch, fp32. Kinds without an ONNX path are returned as they are; a labelled
    image encoder's backbone and text encoder each get theirs."""
    if spec.kind == "labelled_image":
        body = spec.model_dump(mode="json")
        body["backbone"] = with_runtime(spec.backbone, runtime, device, precision).model_dump(mode="json")
        body["text_encoder"] = with_runtime(spec.text_encoder, runtime, device, precision).model_dump(mode="json")
        return ENCODER_SPEC_ADAPTER.validate_python(body)
    if not supports_runtime(spec):
        return spec
    chosen = resolve_runtime(runtime, device)
    if chosen == "torch":
        if precision not in (None, "fp32"):
            raise ConfigError(f"precision {precision!r} needs runtime onnx; {spec.name!r} on torch is fp32")
        update = {"runtime": "torch", "precision": "fp32"}
    else:
        update = {"runtime": "onnx", "precision": precision or spec.onnx_precision}
    body = {**spec.model_dump(mode="json"), **update}
    return ENCODER_SPEC_ADAPTER.validate_python(body)


def torch_twin(spec: EncoderSpec) -> EncoderSpec:
    """The same encoder on torch, fp32: where an ONNX export takes its weights and its reference features."""
    return with_runtime(spec, "torch")


def interchangeable(a: EncoderSpec, b: EncoderSpec) -> bool:
    """True when features of ``a`` may stand for features of ``b``: the same encoder id, or the same spec but
    for the runtime and precision (whose agreement is checked at export: module docstring)."""
    return encoder_id(a) == encoder_id(b) or encoder_id(torch_twin(a)) == encoder_id(torch_twin(b))
