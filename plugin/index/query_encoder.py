"""Query inputs -> unit vectors in a bundle's shared space: the encoding half of the query boundary.

A :class:`QueryEncoder` holds one bundle and its query encoders (built once per encoder id, from a pool
that can be shared across bundles). Texts, image files and sound files become vectors; an audio encoder
that transcribes also says what it heard (:class:`Heard`), which is returned, never written into an
argument. The library's :class:`~mmalign.plugin.index.search.Searcher`, the service (in its own process
or in the model process) and the recommender all encode through this one class, so a query is encoded
the same way wherever it arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.connectors.errors import ConfigError, MediaError
from mmalign.plugin.index.spoken import add_hypotheses, with_spoken_text
from mmalign.schemas import Modality


@dataclass(frozen=True)
class Heard:
    """What an audio encoder that transcribes heard in one query clip (``transcript`` "" for no speech)."""

    audio: str
    transcript: str
    speech_probability: float
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_notes(cls, audio: str, notes: dict[str, Any]) -> Heard:
        rest = {k: v for k, v in notes.items() if k not in ("transcript", "speech_probability")}
        return cls(audio, str(notes.get("transcript") or ""), float(notes.get("speech_probability", 1.0)), rest)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form the CLI and the service print: audio, transcript, speech probability (+ notes)."""
        return {
            "audio": self.audio,
            "transcript": self.transcript,
            "speech_probability": self.speech_probability,
            **self.notes,
        }


@dataclass(frozen=True)
class Encoded:
    """One encoded query input: its vector, and what was heard when it is a clip with a transcriber."""

    vector: np.ndarray
    heard: Heard | None = None


@dataclass(frozen=True)
class Rejected:
    """One query input that cannot be used (media that does not decode, non-finite features); ``path`` is
    the file it came from (a service removes it from the reason before a client reads it)."""

    reason: str
    path: str | None = None


class QueryEncoder:
    """Encodes query inputs with one bundle's encoders and student."""

    def __init__(self, bundle, *, device: str = "auto", encoder_pool: dict | None = None, runtime: str | None = None):
        """``runtime``: torch, onnx or auto (None: ``$MMALIGN_RUNTIME``, else auto): plugin/encoders/runtime.py."""
        self.bundle = bundle
        self.device = device
        self.runtime = runtime
        self.pool = encoder_pool if encoder_pool is not None else {}

    @property
    def modalities(self) -> list[Modality]:
        return list(self.bundle.modalities)

    def encoder(self, modality: Modality | str):
        """The bundle's encoder of ``modality``, built on first use (once per encoder id in the pool)."""
        from mmalign.plugin.encoders import build_encoder
        from mmalign.plugin.encoders.registry import encoder_id
        from mmalign.plugin.encoders.runtime import with_runtime

        modality = self._check(modality)
        spec = with_runtime(self.bundle.encoder_spec(modality), self.runtime, self.device)
        key = encoder_id(spec)
        if key not in self.pool:
            self.pool[key] = build_encoder(spec, device=self.device)
        return self.pool[key]

    def load(self) -> None:
        """Build every encoder of the bundle now (a service does this before answering)."""
        for modality in self.bundle.modalities:
            self.encoder(modality)

    def _check(self, modality: Modality | str) -> Modality:
        modality = Modality(modality)
        if modality not in self.bundle.modalities:
            raise ConfigError(
                f"bundle {self.bundle.bundle_id} has no {modality.value} projection; it has "
                f"{[m.value for m in self.bundle.modalities]}"
            )
        return modality

    def embed(self, modality: Modality | str, value: str | Path) -> Encoded:
        """A text, or an image/audio file path -> its unit vector (and what was heard, for a clip); a file
        that cannot be decoded raises its :class:`MediaError`.

        When speech was heard and the bundle's text encoder is the one that embeds the transcript, the
        transcript's text-tower vector is added to the audio vector: a spoken query lands where its words
        do, whatever audio the bundle was trained on (docs/audio.md)."""
        modality = self._check(modality)
        encoder = self.encoder(modality)
        if modality is Modality.TEXT:
            loaded: Any = str(value)
        else:
            path = Path(value)
            if not path.is_file():
                raise ConfigError(f"{modality.value} query file {str(path)!r} does not exist")
            loaded = encoder.load_input(path, item_id=f"query:{path.name}")
        [result] = self._encode(modality, encoder, [loaded], [str(value)])
        if isinstance(result, Rejected):
            raise MediaError(f"query:{Path(str(value)).name}", result.reason, modality=modality.value)
        return result

    def embed_batch(
        self, modality: Modality | str, values: Sequence[Any], decode: Executor | None = None
    ) -> list[Encoded | Rejected]:
        """Texts, or paths of image/audio files (decoded on ``decode``'s threads), encoded as one batch.
        Each value gets its own result; an encoder that fails on the whole batch raises."""
        modality = self._check(modality)
        encoder = self.encoder(modality)
        if modality is Modality.TEXT:
            loaded: list[Any] = [str(v) for v in values]
        elif decode is not None and len(values) > 1:
            loaded = list(decode.map(lambda path: self._decode(encoder, str(path)), values))
        else:
            loaded = [self._decode(encoder, str(path)) for path in values]
        return self._encode(modality, encoder, loaded, [str(v) for v in values])

    def _encode(self, modality: Modality, encoder, loaded: list[Any], names: list[str]) -> list[Encoded | Rejected]:
        results: list[Any] = [x if isinstance(x, Rejected) else None for x in loaded]
        good = [i for i, x in enumerate(loaded) if not isinstance(x, Rejected)]
        if not good:
            return results
        batch = [loaded[i] for i in good]
        notes: list[dict | None] = [None] * len(good)
        if getattr(encoder, "annotates", False):  # it says what it heard: a spoken query also counts as text
            features, notes = encoder.encode_with_annotations(batch, batch_size=len(good))
            add_hypotheses(encoder, batch, notes)  # the n-best list of speech, for the lexical branch
            vectors = [
                with_spoken_text(self.bundle, encoder, v, n.get("transcript"))
                for v, n in zip(self.bundle.embed(modality, features), notes)
            ]
        else:
            features = encoder.encode(batch, batch_size=len(good))
            vectors = self.bundle.embed(modality, features)
        for i, row, vector, note in zip(good, features, vectors, notes):
            if np.isfinite(row).all() and np.isfinite(vector).all():
                heard = None if note is None else Heard.from_notes(names[i], note)
                results[i] = Encoded(np.asarray(vector, dtype=np.float32), heard)
            else:
                results[i] = Rejected(f"gave non-finite {modality.value} features", names[i])
        return results

    @staticmethod
    def _decode(encoder, path: str) -> Any:
        try:
            return encoder.load_input(path, item_id=f"query:{Path(path).name}")
        except MediaError as exc:
            return Rejected("cannot be used: " + exc.reason, path)

    def warm_up(self) -> None:
        """One query per modality through encoder and student: the first request is not the slow one."""
        from PIL import Image

        for modality in self.bundle.modalities:
            encoder = self.encoder(modality)
            if modality is Modality.TEXT:
                sample: Any = "warm up"
            elif modality is Modality.IMAGE:
                sample = Image.new("RGB", (64, 64), (128, 128, 128))
            else:
                rate = int(getattr(encoder.spec, "sample_rate", 16000))
                sample = (0.01 * np.sin(np.arange(rate) * 0.05)).astype(np.float32)
            self.bundle.embed(modality, encoder.encode([sample], batch_size=1))
