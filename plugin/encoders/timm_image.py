"""timm image backbones; the pooled pre-logits feature."""

from __future__ import annotations

import numpy as np

from mmalign.plugin.encoders.base import TorchEncoder
from mmalign.plugin.encoders.weights import WeightsError, resolve_local


class LetterboxInput:
    """Image input of the timm encoders on either runtime: decoded, composited on the spec's background and
    letterboxed to ``image_size`` on the decode threads, not in ``encode``."""

    def load_input(self, path, item_id):
        """Decode and resize to the model's input size: done on the decode threads, not in ``encode``."""
        return self.prepare(super().load_input(path, item_id))

    def prepare(self, image):
        """Letterbox to ``image_size`` square on the spec's background (a no-op when already that size)."""
        from PIL import Image, ImageOps

        size = self.spec.image_size
        if image.mode != "RGB":  # as media.load_image does: alpha composited on the background
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (*self.spec.background, 255))
            canvas.alpha_composite(rgba)
            image = canvas.convert("RGB")
        if image.size == (size, size):
            return image
        return ImageOps.pad(image, (size, size), color=tuple(self.spec.background))


class TimmImageEncoder(LetterboxInput, TorchEncoder):
    def _build(self):
        import timm
        import torch

        spec = self.spec
        model = timm.create_model(spec.arch, pretrained=False, num_classes=0)
        path = resolve_local(spec.weights)
        if spec.weights is not None and path is None:
            raise WeightsError(
                f"encoder {spec.name!r}: timm weights must be a local file or a pkg: tag, got {spec.weights!r}"
            )
        if path is not None:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                checkpoint = load_file(str(path))
            else:  # .pth from a weights package: tensors only, no arbitrary unpickling
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
            model.load_state_dict(
                _map_state_dict(checkpoint, model.state_dict(), spec.state_dict_mapping, spec.name), strict=True
            )
        if self.device.type == "cuda":  # cuDNN's fast convolution kernels want NHWC
            model = model.to(memory_format=torch.channels_last)
        return model

    def _encode_batch(self, batch):
        import torch

        # uint8 NHWC crosses to the device (4x fewer bytes than float32); scaling happens there.
        pixels = torch.from_numpy(np.stack([np.asarray(self.prepare(img), dtype=np.uint8) for img in batch]))
        x = self._to_device(pixels).permute(0, 3, 1, 2).float().div_(255.0)
        if getattr(self, "_norm", None) is None:
            self._norm = (
                torch.tensor(self.spec.mean, device=self.device).view(1, 3, 1, 1),
                torch.tensor(self.spec.std, device=self.device).view(1, 3, 1, 1),
            )
        mean, std = self._norm
        x = (x - mean) / std
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return self._run(self.model, x)


def _map_state_dict(checkpoint: dict, target: dict, mapping: str, name: str) -> dict:
    """Keys by name, or by position after checking that every shape matches (classifier dropped)."""
    checkpoint = {k: v for k, v in checkpoint.items() if not k.startswith(("_fc.", "fc.", "classifier."))}
    if mapping == "by_name":
        return checkpoint
    if len(checkpoint) != len(target):
        raise WeightsError(f"encoder {name!r}: checkpoint has {len(checkpoint)} tensors, model {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(checkpoint.items(), target.items()):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise WeightsError(
                f"encoder {name!r}: checkpoint tensor {src_key} {tuple(tensor.shape)} does not fit "
                f"{dst_key} {tuple(ref.shape)}; the checkpoint is for another architecture"
            )
        mapped[dst_key] = tensor
    return mapped
