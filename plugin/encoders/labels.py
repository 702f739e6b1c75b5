"""An image classifier's feature plus what its classifier head says, in a text encoder's space.

A frozen ImageNet classifier has learned from 1.28 M labelled images: its head maps an image to class
probabilities, and each class has a name. Embedding the names with the catalog's text encoder and weighting them
by the probabilities (the "convex combination of semantic embeddings" of Norouzi et al., ICLR 2014) places the
image where its texts live, with no catalog pairs at all. :class:`LabelledImageEncoder` appends that vector to the
backbone's pooled feature; the learned projections decide how much to trust it (schemas/encoders.py,
``LabelledImageSpec``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

from mmalign.plugin.encoders.base import Encoder
from mmalign.plugin.encoders.weights import WeightsError, resolve_local

VOCABULARIES = Path(__file__).parent / "vocabularies"
#: Checkpoint keys of a classifier head, as the weight packages and timm name them.
HEAD_KEYS = (("_fc.weight", "_fc.bias"), ("classifier.weight", "classifier.bias"), ("fc.weight", "fc.bias"))


@cache
def class_names(vocabulary: str) -> tuple[str, ...]:
    """The classifier's class names in its output order."""
    path = VOCABULARIES / f"{vocabulary}.json"
    if not path.is_file():
        known = sorted(p.stem for p in VOCABULARIES.glob("*.json"))
        raise WeightsError(f"unknown vocabulary {vocabulary!r}; known: {known}")
    return tuple(json.loads(path.read_text())["classes"])


def label_part(pooled: np.ndarray, head: tuple[np.ndarray, np.ndarray], names: np.ndarray, spec) -> np.ndarray:
    """The label vector of each pooled feature: the ``top_k`` class probabilities (softmax of the head's logits
    at ``temperature``) times the class-name embeddings ``names``, L2-normalised, scaled to ``weight`` times the
    pooled feature's norm. A row with no finite logits stays zero."""
    pooled = np.asarray(pooled, dtype=np.float32)
    weight, bias = head
    logits = (pooled @ weight.T + bias) / spec.temperature
    k = min(spec.top_k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    chosen = np.take_along_axis(logits, top, axis=1)
    chosen = np.exp(chosen - chosen.max(axis=1, keepdims=True))
    chosen /= chosen.sum(axis=1, keepdims=True)
    vectors = np.einsum("nk,nkd->nd", chosen, names[top])
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.where(norms > 0, vectors / np.where(norms > 0, norms, 1.0), 0.0)
    scale = spec.weight * np.linalg.norm(pooled, axis=1, keepdims=True)
    return np.nan_to_num(vectors * scale).astype(np.float32)


def labelled(pooled: np.ndarray, head, names: np.ndarray, spec) -> np.ndarray:
    """``[pooled ; label part]``: the encoder's output for these pooled backbone features."""
    pooled = np.asarray(pooled, dtype=np.float32)
    return np.concatenate([pooled, label_part(pooled, head, names, spec)], axis=1)


def classifier_head(spec) -> tuple[np.ndarray, np.ndarray]:
    """(weight (classes, dim), bias (classes,)) of the backbone's classifier, from its weights file. Random (seed
    0) for a backbone without weights (tiny test towers), like the backbone itself."""
    n_classes = len(class_names(spec.vocabulary))
    backbone = spec.backbone
    if backbone.weights is None:
        rng = np.random.default_rng(0)
        return (
            rng.normal(0, backbone.dim**-0.5, (n_classes, backbone.dim)).astype(np.float32),
            np.zeros(n_classes, np.float32),
        )
    path = resolve_local(backbone.weights)
    if path is None:
        raise WeightsError(f"encoder {spec.name!r}: backbone weights must be local, got {backbone.weights!r}")
    checkpoint = _load_checkpoint(path)
    for w_key, b_key in HEAD_KEYS:
        if w_key in checkpoint and b_key in checkpoint:
            weight, bias = np.asarray(checkpoint[w_key], np.float32), np.asarray(checkpoint[b_key], np.float32)
            if weight.shape != (n_classes, backbone.dim) or bias.shape != (n_classes,):
                raise WeightsError(
                    f"encoder {spec.name!r}: classifier head {w_key} is {weight.shape}, expected "
                    f"({n_classes}, {backbone.dim}) for vocabulary {spec.vocabulary!r}"
                )
            return weight, bias
    raise WeightsError(
        f"encoder {spec.name!r}: no classifier head in {path} (looked for {[k for k, _ in HEAD_KEYS]}); "
        "a labelled image encoder needs the classifier's weights"
    )


def name_embeddings(spec, build_text_encoder) -> np.ndarray:
    """(classes, text dim): the class names (in ``spec.prompt``) embedded by the text encoder. Kept as safetensors in
    ``$MMALIGN_WEIGHTS_CACHE`` (by default next to the feature cache), named by the text encoder's id and a hash of
    the prompts, so that a process that builds this encoder (a CLI image query) need not load the text encoder and
    embed 1,000 names again; where the cache cannot be read or written, they are embedded here."""
    import hashlib

    from mmalign.plugin.encoders.registry import encoder_id
    from mmalign.plugin.encoders.weights import kept_in_weights_cache

    prompts = [spec.prompt.format(name) for name in class_names(spec.vocabulary)]
    text_id = encoder_id(spec.text_encoder)
    digest = hashlib.sha256("\n".join([text_id, *prompts]).encode()).hexdigest()[:16]
    expected = (len(prompts), spec.text_encoder.dim)
    kept = kept_in_weights_cache(
        f"names-{spec.vocabulary}-{digest}.safetensors",
        lambda: {"names": np.ascontiguousarray(build_text_encoder().encode(prompts), dtype=np.float32)},
        what="class-name embeddings",
        metadata={"text_encoder": text_id, "vocabulary": spec.vocabulary},
        numpy=True,
        valid=lambda t: "names" in t and t["names"].shape == expected and bool(np.isfinite(t["names"]).all()),
    )
    return kept["names"]


def _load_checkpoint(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))
    import torch  # .pth from a weights package: tensors only, no arbitrary unpickling

    return {k: v.numpy() for k, v in torch.load(str(path), map_location="cpu", weights_only=True).items()}


class LabelledImageEncoder(Encoder):
    """The backbone (on its own runtime) encodes the image; the head and the class-name embeddings (computed once,
    then read from the weights cache: :func:`name_embeddings`) give the label part."""

    def __init__(self, spec, device: str = "auto", export_dir=None):
        super().__init__(spec, device)
        from mmalign.plugin.encoders import build_encoder

        self.backbone = build_encoder(spec.backbone, device=device, export_dir=export_dir)
        self.device = getattr(self.backbone, "device", None)
        self.names = name_embeddings(
            spec, lambda: build_encoder(spec.text_encoder, device=device, export_dir=export_dir)
        )
        self.head = classifier_head(spec)

    def load_input(self, path, item_id):
        return self.backbone.load_input(path, item_id)

    def from_pooled(self, pooled: np.ndarray) -> np.ndarray:
        """This encoder's features from the backbone's (e.g. cached) features."""
        return labelled(pooled, self.head, self.names, self.spec)

    def _encode_batch(self, batch):
        return self.from_pooled(self.backbone.encode(batch, batch_size=len(batch)))
