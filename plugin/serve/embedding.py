"""Query inputs -> unit vectors with one bundle: decode, encode as one batch, project. Used in the service
process (``--in-process``) and in the model process (:mod:`.worker`).

Each value gets its own result: ``("ok", vector)`` (``("ok", (vector, what was heard))`` from an audio
encoder that transcribes), or ``("bad", reason)`` for media that cannot be
decoded or an encoder output that is not finite. An encoder that fails on the batch raises; the
batcher then retries the values one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from mmalign.connectors.errors import MediaError
from mmalign.plugin.index.spoken import with_spoken_text
from mmalign.plugin.serve.errors import public_message
from mmalign.schemas import Modality


def load_encoders(bundle, device: str, pool: dict) -> dict[Modality, Any]:
    """The bundle's query encoders, built once per encoder id (``pool`` is shared across bundles)."""
    from mmalign.plugin.encoders import build_encoder
    from mmalign.plugin.encoders.registry import encoder_id

    encoders = {}
    for modality in bundle.modalities:
        spec = bundle.encoder_spec(modality)
        key = encoder_id(spec)
        if key not in pool:
            pool[key] = build_encoder(spec, device=device)
        encoders[modality] = pool[key]
    return encoders


def _decode(encoder, path: str) -> tuple[str, Any]:
    try:
        return "ok", encoder.load_input(path, item_id="query")
    except MediaError as exc:
        return "bad", "cannot be used: " + public_message(exc.reason, [path, os.path.basename(path)])


def embed_values(
    bundle, encoders: dict, modality: str, values: Sequence[Any], decode: Executor | None = None
) -> list[tuple[str, Any]]:
    """Texts, or paths of image/audio files (decoded on ``decode``'s threads) -> one result per value."""
    modality = Modality(modality)
    encoder = encoders[modality]
    if modality is Modality.TEXT:
        loaded = [("ok", str(v)) for v in values]
    elif decode is not None and len(values) > 1:
        loaded = list(decode.map(lambda path: _decode(encoder, path), values))
    else:
        loaded = [_decode(encoder, path) for path in values]
    results: list[tuple[str, Any]] = [item if item[0] == "bad" else ("", None) for item in loaded]
    good = [i for i, item in enumerate(loaded) if item[0] == "ok"]
    if good:
        batch = [loaded[i][1] for i in good]
        notes: list[dict | None] = [None] * len(good)
        if getattr(encoder, "annotates", False):  # it says what it heard: a spoken query also counts as text
            features, notes = encoder.encode_with_annotations(batch, batch_size=len(good))
            vectors = [
                with_spoken_text(bundle, encoder, v, n.get("transcript"))
                for v, n in zip(bundle.embed(modality, features), notes)
            ]
        else:
            features = encoder.encode(batch, batch_size=len(good))
            vectors = bundle.embed(modality, features)
        for i, row, vector, note in zip(good, features, vectors, notes):
            if np.isfinite(row).all() and np.isfinite(vector).all():
                vector = np.asarray(vector, dtype=np.float32)
                results[i] = ("ok", vector if note is None else (vector, {"audio": "upload", **note}))
            else:
                results[i] = ("bad", f"gave non-finite {modality.value} features")
    return results


def warm_up(bundle, encoders: dict) -> None:
    """One query per modality through encoder and student: the first request is not the slow one."""
    from PIL import Image

    for modality, encoder in encoders.items():
        if modality is Modality.TEXT:
            sample: Any = "warm up"
        elif modality is Modality.IMAGE:
            sample = Image.new("RGB", (64, 64), (128, 128, 128))
        else:
            rate = int(getattr(encoder.spec, "sample_rate", 16000))
            sample = (0.01 * np.sin(np.arange(rate) * 0.05)).astype(np.float32)
        bundle.embed(modality, encoder.encode([sample], batch_size=1))
