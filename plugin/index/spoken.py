"""Spoken queries: the transcript an audio encoder heard, added to the audio vector as text, and matched
against the items' words.

A spoken query then lands where its words land, whatever audio the bundle was trained on (a bundle
trained on sound effects only has never seen speech). Used by :class:`~mmalign.plugin.index.search.Searcher`
and by the service's batched query encoding, so both answer a spoken query the same way (docs/audio.md).
What was heard also goes through the lexical branch of hybrid search, over the whole collection
(:func:`spoken_terms`): its words, and their phonetic keys, which survive much of what Whisper mishears
(docs/search.md).
"""

from __future__ import annotations

import numpy as np

from mmalign.connectors.query import SparseVector
from mmalign.plugin.index.lexical import query_vector
from mmalign.schemas import Modality


def spoken_text_vector(bundle, encoder, transcript: str | None) -> np.ndarray | None:
    """The text tower's vector of ``transcript``, when speech was heard and the bundle's text encoder is
    the one that embeds the encoder's transcripts, on whichever runtime (else None: nothing to add)."""
    from mmalign.plugin.encoders.runtime import interchangeable

    transcriber = getattr(encoder, "transcriber", None)
    if not transcript or transcriber is None or Modality.TEXT not in bundle.modalities:
        return None
    if not interchangeable(transcriber.spec.text_encoder, bundle.encoder_spec(Modality.TEXT)):
        return None
    return bundle.embed(Modality.TEXT, transcriber.text_encoder.encode([transcript], batch_size=1))[0]


def with_spoken_text(bundle, encoder, vector: np.ndarray, transcript: str | None) -> np.ndarray:
    """``vector`` plus the transcript's text vector, renormalised; ``vector`` itself when nothing was heard."""
    spoken = spoken_text_vector(bundle, encoder, transcript)
    if spoken is None:
        return vector
    combined = vector + spoken
    return combined / max(float(np.linalg.norm(combined)), 1e-12)


#: A spoken query's first hits are re-scored by how well what was heard matches each hit's text:
#: ``(cosine + LEXICAL_WEIGHT * match) / (1 + LEXICAL_WEIGHT)`` over the top ``LEXICAL_CANDIDATES``.
#: Whisper tiny mishears ("a black word" for "a blackbird") but keeps most of the letters, and a
#: character n-gram match forgives that; both values were chosen on validation clips (docs/audio.md).
LEXICAL_CANDIDATES = 200
LEXICAL_WEIGHT = 16.0
#: ... only when Whisper is this sure that the clip holds speech: it also "hears" words in sound effects
#: ("BAM BAM!", "Mmm"), and matching those against item texts hurts sound queries.
LEXICAL_MIN_SPEECH = 0.7


def char_ngrams(text: str, sizes: tuple[int, ...] = (2, 3, 4)) -> dict[str, float]:
    """Unit-length bag of the character n-grams of each word of ``text`` (lower case, words padded with
    a space on each side), with sublinear counts (1 + log count)."""
    counts: dict[str, int] = {}
    for word in text.lower().split():
        padded = f" {word} "
        for n in sizes:
            for start in range(max(len(padded) - n + 1, 0)):
                gram = padded[start : start + n]
                counts[gram] = counts.get(gram, 0) + 1
    weights = {g: 1.0 + float(np.log(c)) for g, c in counts.items()}
    norm = float(np.sqrt(sum(w * w for w in weights.values())))
    return {g: w / norm for g, w in weights.items()} if norm > 0 else {}


def text_match(a: dict[str, float], b: dict[str, float]) -> float:
    """Cosine of two :func:`char_ngrams` bags (0 when either is empty)."""
    if len(a) > len(b):
        a, b = b, a
    return float(sum(w * b.get(g, 0.0) for g, w in a.items()))


def rescore_by_transcript(hits: list, transcript: str, k: int, weight: float = LEXICAL_WEIGHT) -> list:
    """The best ``k`` of ``hits`` (each with ``score`` and a ``payload`` that may hold ``text``) by
    ``(score + weight * text_match(transcript, text)) / (1 + weight)``; the new score is that value."""
    heard = char_ngrams(transcript)
    scored = []
    for rank, hit in enumerate(hits):
        match = text_match(heard, char_ngrams(str((hit.payload or {}).get("text") or "")))
        scored.append(((hit.score + weight * match) / (1.0 + weight), rank, hit))
    scored.sort(key=lambda entry: (-entry[0], entry[1]))
    return [hit.model_copy(update={"score": score}) for score, _, hit in scored[:k]]


#: What was heard counts as speech (goes to the lexical branch, to an item's ``lexical`` vector and payload
#: ``heard``) when Whisper's speech probability is at least this; chosen on validation (docs/search.md).
SPEECH_FLOOR = 0.5
#: Weight of the phonetic keys of what was heard, against 1 for its words (docs/search.md).
PHONETIC_WEIGHT = 0.5


def is_speech(transcript: str | None, speech_probability: float, floor: float = SPEECH_FLOOR) -> bool:
    """Whether what a clip was heard to say is speech rather than words hallucinated in a sound effect."""
    return bool(transcript and transcript.strip()) and speech_probability >= floor


#: Hypotheses of a spoken query's n-best list (beam search, as many beams) matched by the lexical branch.
HYPOTHESES = 5


def spoken_terms(heard, *, floor: float = SPEECH_FLOOR, phonetic: float = PHONETIC_WEIGHT) -> SparseVector | None:
    """The lexical query of one spoken input (a :class:`~mmalign.plugin.index.query_encoder.Heard`): the
    words of its n-best transcripts (``notes["hypotheses"]``: [text, mean log-probability] pairs, each text
    weighted by its softmax share; else the transcript alone) and their phonetic terms (weighted
    ``phonetic``); None when it is not speech."""
    if not is_speech(heard.transcript, heard.speech_probability, floor):
        return None
    found = [(str(t), float(s)) for t, s in (heard.notes or {}).get("hypotheses") or [] if str(t).strip()]
    if not found:
        return query_vector(heard.transcript, phonetic=phonetic)
    shares = np.exp(np.array([s for _, s in found]) - max(s for _, s in found))
    return query_vector([t for t, _ in found], phonetic=phonetic, weights=list(shares / shares.sum()))


def add_hypotheses(encoder, clips: list, notes: list[dict], n: int = HYPOTHESES) -> None:
    """Put the ``n``-best transcripts of each clip whose greedy transcript is speech into its annotation
    (``hypotheses``), when the encoder's transcriber can list them (one more decoding pass, beam ``n``)."""
    transcriber = getattr(encoder, "transcriber", None)
    if n < 2 or transcriber is None or not hasattr(transcriber, "hypotheses"):
        return
    speech = [i for i, note in enumerate(notes) if is_speech(note.get("transcript"), note.get("speech_probability", 1))]
    if speech:
        for i, found in zip(speech, transcriber.hypotheses([clips[i] for i in speech], num_hypotheses=n)):
            notes[i]["hypotheses"] = [[text, round(score, 4)] for text, score in found]


def speech_heard(note: dict) -> str:
    """The transcript of a clip's annotation when it is speech, else "" (a sound effect's hallucinated words
    are neither stored as ``heard`` nor matched)."""
    transcript = str(note.get("transcript") or "")
    return transcript if is_speech(transcript, float(note.get("speech_probability", 1.0))) else ""
