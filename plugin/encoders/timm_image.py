"""timm image backbones; the pooled pre-logits feature."""

from __future__ import annotations

import numpy as np

from mmalign.plugin.encoders.base import TorchEncoder
from mmalign.plugin.encoders.weights import WeightsError, resolve_local


class TimmImageEncoder(TorchEncoder):
    def _build(self):
        import timm
        import torch

        spec = self.spec
        model = timm.create_model(spec.arch, pretrained=False, num_classes=0)
        path = resolve_local(spec.weights)
        if spec.weights is not None and path is None:
            raise WeightsError(f"encoder {spec.name!r}: timm weights must be a local file or a pkg: tag, "
                               f"got {spec.weights!r}")
        if path is not None:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                checkpoint = load_file(str(path))
            else:  # .pth from a weights package: tensors only, no arbitrary unpickling
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
            model.load_state_dict(_map_state_dict(checkpoint, model.state_dict(), spec.state_dict_mapping,
                                                  spec.name), strict=True)
        return model

    def _encode_batch(self, batch):
        import torch
        from PIL import ImageOps

        size = self.spec.image_size
        arrays = [np.asarray(ImageOps.pad(img, (size, size), color=tuple(self.spec.background)), dtype=np.float32)
                  for img in batch]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).div_(255.0)
        mean = torch.tensor(self.spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(self.device)
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
            raise WeightsError(f"encoder {name!r}: checkpoint tensor {src_key} {tuple(tensor.shape)} does not fit "
                               f"{dst_key} {tuple(ref.shape)}; the checkpoint is for another architecture")
        mapped[dst_key] = tensor
    return mapped
