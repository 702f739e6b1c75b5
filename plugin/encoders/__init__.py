"""Frozen encoders, one per spec kind, all with the same ``encode`` signature."""

from __future__ import annotations

from mmalign.plugin.encoders.base import Encoder
from mmalign.plugin.encoders.factory import build_kind
from mmalign.plugin.encoders.registry import get_encoder_spec

__all__ = ["Encoder", "build_encoder"]


def build_encoder(spec_or_name, device: str = "auto", *, export_dir=None) -> Encoder:
    """Load the encoder a spec (or registered name) describes. A spec with ``runtime: onnx`` runs on ONNX
    Runtime, exported at first use into ``export_dir`` (default: :func:`.onnx_runtime.export_dir`)."""
    spec = get_encoder_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    if spec.kind == "labelled_image":  # its parts run on their own runtimes
        return build_kind(spec, device=device, export_dir=export_dir)
    if getattr(spec, "runtime", "torch") == "onnx":
        from mmalign.plugin.encoders.onnx_runtime import encoder_class

        return encoder_class(spec)(spec, device=device, export_root=export_dir)
    return build_kind(spec, device=device)
