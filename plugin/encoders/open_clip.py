"""open_clip image and text towers (real CLIP weights from a local file or a hub tag; tiny towers from config)."""

from __future__ import annotations

from mmalign.plugin.encoders.base import TorchEncoder
from mmalign.plugin.encoders.weights import WeightsError, resolve_local


def _create(spec):
    """Build the full CLIP model and its eval preprocessing; weights per the spec."""
    import open_clip

    arch = spec.arch
    if spec.model_config_override is not None:
        # Tiny test towers: register the config under its arch name (as open_clip's own tests do).
        open_clip.factory._MODEL_CONFIGS[arch] = dict(spec.model_config_override)
    elif arch not in open_clip.list_models() and not arch.startswith(("hf-hub:", "local-dir:")):
        raise WeightsError(
            f"encoder {spec.name!r}: open_clip has no architecture {arch!r}; see open_clip.list_models()"
        )
    path = resolve_local(spec.weights)
    pretrained = str(path) if path is not None else spec.weights
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
    except Exception as exc:
        if path is None and spec.weights is not None:
            raise WeightsError(
                f"encoder {spec.name!r}: could not get open_clip weights {spec.weights!r} ({exc}). Offline, pass a "
                f"local checkpoint: weights={{{spec.name!r}: '/path/to/open_clip_model.safetensors'}} "
                f"(CLI: --weights {spec.name}=/path/to/open_clip_model.safetensors)"
            ) from exc
        raise
    tokenizer = open_clip.get_tokenizer(arch)
    embed_dim = model.text_projection.shape[-1] if getattr(model, "text_projection", None) is not None else None
    if embed_dim is not None and embed_dim != spec.dim:
        raise WeightsError(f"encoder {spec.name!r}: model embeds to {embed_dim}, spec says dim={spec.dim}")
    return model, preprocess, tokenizer


class OpenClipImageEncoder(TorchEncoder):
    def _build(self):
        model, self.preprocess, _ = _create(self.spec)
        return model

    def _encode_batch(self, batch):
        import torch

        x = torch.stack([self.preprocess(img) for img in batch]).to(self.device)
        return self._run(self.model.encode_image, x)


class OpenClipTextEncoder(TorchEncoder):
    def _build(self):
        model, _, self.tokenizer = _create(self.spec)
        return model

    def _encode_batch(self, batch):
        tokens = self.tokenizer(batch).to(self.device)
        return self._run(self.model.encode_text, tokens)
