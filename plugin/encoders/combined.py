"""One audio feature that serves speech and sounds: several audio encoders on one clip, side by side.

Each part's vector is L2-normalised and scaled by its weight (``keep_last`` trailing columns, e.g. a speech
probability, are left as they are), so that no part dominates the projection's fit by its scale alone. The learned
projection then uses whichever part carries the meaning: the transcript for a spoken query, the
sound-effects embedding for a bark. Annotations of the parts (the transcript) are merged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmalign.plugin.encoders.base import Encoder


def combine_parts(spec, features: Sequence[np.ndarray]) -> np.ndarray:
    """The concatenated feature from each part's own features (rows aligned): what the encoder returns.
    Public so that features already cached per part can be combined without encoding again."""
    out = []
    for part, x in zip(spec.parts, features, strict=True):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != part.encoder.dim:
            raise ValueError(f"part {part.encoder.name!r} features are {x.shape}, expected (n, {part.encoder.dim})")
        x = x.copy()
        body = x[:, : x.shape[1] - part.keep_last] if part.keep_last else x
        if part.normalize:
            norms = np.linalg.norm(body, axis=1, keepdims=True)
            body /= np.where(norms > 0, norms, 1.0)  # a zero part (no speech) stays zero
        body *= part.weight
        out.append(x)
    return np.concatenate(out, axis=1).astype(np.float32)


class ConcatAudioEncoder(Encoder):
    def __init__(self, spec, device: str = "auto"):
        super().__init__(spec, device)
        from mmalign.plugin.encoders import build_encoder

        self.parts = [build_encoder(p.encoder, device=device) for p in spec.parts]
        self.annotates = any(e.annotates for e in self.parts)
        #: The part that transcribes, if any (search reads transcripts through it).
        self.transcriber = next((e.transcriber for e in self.parts if getattr(e, "transcriber", None)), None)

    @property
    def default_batch_size(self) -> int:
        return min(e.default_batch_size for e in self.parts)

    def _inputs_for(self, encoder, batch):
        """The clips at this part's sample rate and length (they were decoded at the highest rate)."""
        rate = encoder.spec.sample_rate
        limit = int(encoder.spec.max_seconds * rate)
        if rate == self.spec.sample_rate:
            return [np.asarray(w, dtype=np.float32)[:limit] for w in batch]
        import soxr

        return [
            soxr.resample(
                np.asarray(w, dtype=np.float32)[: int(encoder.spec.max_seconds * self.spec.sample_rate)],
                self.spec.sample_rate,
                rate,
            ).astype(np.float32)[:limit]
            for w in batch
        ]

    def _encode_batch_annotated(self, batch):
        features, notes = [], [{} for _ in batch]
        for encoder in self.parts:
            inputs = self._inputs_for(encoder, batch)
            if encoder.annotates:
                x, part_notes = encoder.encode_with_annotations(inputs, batch_size=len(inputs))
                for merged, note in zip(notes, part_notes):
                    merged.update(note)
            else:
                x = encoder.encode(inputs, batch_size=len(inputs))
            features.append(x)
        return combine_parts(self.spec, features), notes

    def _encode_batch(self, batch):
        return self._encode_batch_annotated(batch)[0]
