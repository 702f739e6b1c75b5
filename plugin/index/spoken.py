"""Spoken queries: the transcript an audio encoder heard, added to the audio vector as text.

A spoken query then lands where its words land, whatever audio the bundle was trained on (a bundle
trained on sound effects only has never seen speech). Used by :class:`~mmalign.plugin.index.search.Searcher`
and by the service's batched query encoding, so both answer a spoken query the same way (docs/audio.md).
"""

from __future__ import annotations

import numpy as np

from mmalign.schemas import Modality


def spoken_text_vector(bundle, encoder, transcript: str | None) -> np.ndarray | None:
    """The text tower's vector of ``transcript``, when speech was heard and the bundle's text encoder is
    the one that embeds the encoder's transcripts (else None: nothing to add)."""
    from mmalign.plugin.encoders.registry import encoder_id

    transcriber = getattr(encoder, "transcriber", None)
    if not transcript or transcriber is None or Modality.TEXT not in bundle.modalities:
        return None
    if encoder_id(transcriber.spec.text_encoder) != encoder_id(bundle.encoder_spec(Modality.TEXT)):
        return None
    return bundle.embed(Modality.TEXT, transcriber.text_encoder.encode([transcript], batch_size=1))[0]


def with_spoken_text(bundle, encoder, vector: np.ndarray, transcript: str | None) -> np.ndarray:
    """``vector`` plus the transcript's text vector, renormalised; ``vector`` itself when nothing was heard."""
    spoken = spoken_text_vector(bundle, encoder, transcript)
    if spoken is None:
        return vector
    combined = vector + spoken
    return combined / max(float(np.linalg.norm(combined)), 1e-12)
