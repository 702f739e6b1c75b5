"""transformers text encoders with sentence-transformers pooling."""

from __future__ import annotations

import os

from mmalign.plugin.encoders.base import TorchEncoder
from mmalign.plugin.encoders.weights import WeightsError, resolve_local


class HFTextEncoder(TorchEncoder):
    def _build(self):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        spec = self.spec
        if spec.weights is None:
            raise WeightsError(f"encoder {spec.name!r} needs weights: a local model folder, a pkg: tag or a hub id")
        path = resolve_local(spec.weights)
        source = str(path) if path is not None else spec.weights
        if path is not None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder must never trigger a download
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        # fp32 weights whatever the checkpoint holds: transformers 5 loads a fp16 checkpoint as a fp16
        # model by default (dtype="auto"), which is slow and inexact on a CPU; autocast does the GPU part.
        model = AutoModel.from_pretrained(source, **{_dtype_argument(): torch.float32})
        hidden = model.config.hidden_size
        if hidden != spec.dim:
            raise WeightsError(f"encoder {spec.name!r}: model hidden size is {hidden}, spec says dim={spec.dim}")
        return model

    def _encode_batch(self, batch):
        import torch

        for i, text in enumerate(batch):
            if not isinstance(text, str):
                raise TypeError(f"text input {i} is {type(text).__name__}, not str")
        tokens = self.tokenizer(
            batch, padding=True, truncation=True, max_length=self.spec.max_length, return_tensors="pt"
        ).to(self.device)

        def forward(tok):
            hidden = self.model(**tok).last_hidden_state
            if self.spec.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if self.spec.normalize:
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
            return pooled

        return self._run(forward, tokens)


def _dtype_argument() -> str:
    """``dtype`` since transformers 4.56 (``torch_dtype`` before, deprecated after)."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
