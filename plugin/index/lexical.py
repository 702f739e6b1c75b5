"""Lexical search: one tokenizer and one BM25 weighting, computed here for every engine.

An item's ``lexical`` vector (a sparse named vector with Qdrant's IDF modifier) holds, for each term of its
text and of the speech heard in its sound, the BM25 term-frequency part

    tf · (k1 + 1) / (tf + k1 · (1 − b + b · length / avg_len))

and a query holds 1 for each of its terms; the engine multiplies by each term's IDF,
``ln(1 + (N − n + 0.5) / (n + 0.5))`` over the points of the collection, when it scores. That is how Qdrant
itself does BM25 (its ``Bm25`` model and server-side inference), but the terms are made here, by one Python
definition, and the engines only receive sparse vectors: Qdrant Edge, qdrant-client's local mode and a server
then rank the same (tests/unit/connectors/test_lexical_store.py checks it).

Terms: the text in Unicode NFKC, case-folded, accents removed; runs of letters and digits; English stop
words dropped; plural endings removed (Harman's S-stemmer: ``berries`` → ``berry``, ``glasses`` →
``glass``, ``foxes`` → ``fox``). A term's index in the sparse vector is the CRC-32 of ``w:term``.

Spoken queries also match by sound: an item's vector also holds phonetic terms (n-grams of the consonant
skeleton of its words, :func:`phonetic_keys`) under another kind, weighted the same way over their own count,
and a spoken query adds the phonetic terms of what was heard, so "Sarn glasses" still shares terms with
"sunglasses" where no word is spelled the same. A typed query has no phonetic terms: they never match it.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mmalign.connectors.query import SparseVector
from mmalign.schemas.vocabulary import LEXICAL_VECTOR

#: Identifies the term definition; recorded with a collection (a change means: rebuild ``lexical``).
TOKENIZER_ID = "mmalign-words-1"

STOPWORDS = frozenset(
    """a an the and or of on in at to for with by from as is are was were be been it its this that these those
    into onto over under up down out off s t""".split()
)
_WORD = re.compile(r"[^\W_]+")
#: Length of the phonetic terms (n-grams of the joined consonant skeleton); chosen on validation clips.
PHONETIC_GRAM = 3


@dataclass(frozen=True)
class Bm25Params:
    """BM25's term-frequency saturation ``k1``, length normalisation ``b`` and the document length (in terms)
    that counts as average. Item texts are short (a name, a sentence): ``avg_len`` is fixed rather than
    measured, so that a point's vector does not depend on the rest of the collection."""

    k1: float = 1.2
    b: float = 0.75
    avg_len: float = 8.0


DEFAULT_BM25 = Bm25Params()


def fold(text: str) -> str:
    """NFKC, case-folded, with combining marks (accents) removed."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str | None) -> list[str]:
    """The runs of letters and digits of ``text``, folded (stop words kept)."""
    return _WORD.findall(fold(text)) if text else []


def stem(word: str) -> str:
    """Harman's S-stemmer: ``-ies`` → ``-y`` (not ``-eies``/``-aies``), ``-es`` → ``-e`` (not ``-aes``,
    ``-ees``, ``-oes``), ``-s`` → ``""`` (not ``-us``, ``-ss``); plus ``-ses``/``-xes``/``-ches``/``-shes``
    → without ``-es`` (``glasses`` → ``glass``)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def terms(text: str | None) -> list[str]:
    """The BM25 terms of ``text``: folded words, stop words dropped, plurals stemmed (in order, repeated)."""
    return [stem(w) for w in words(text) if w not in STOPWORDS]


def term_index(term: str, kind: str = "w") -> int:
    """The sparse index of a term of ``kind`` (``w`` word, ``p`` phonetic key): CRC-32 of ``kind:term``."""
    return zlib.crc32(f"{kind}:{term}".encode())


def phonetic_keys(text: str | None, size: int = PHONETIC_GRAM) -> list[str]:
    """Sound-alike terms of ``text``: the consonant skeleton of each word (stop words dropped; see
    :func:`skeleton`), the words joined (a recogniser often splits or joins them: "Sarn glasses" for
    "sunglasses"), cut into overlapping ``size``-grams ("srnkls" → srn rnk nkl kls; "snkls" shares nkl kls).
    Pure and deterministic, so that every engine gets the same terms."""
    joined = "".join(skeleton(stem(w)) for w in words(text) if w not in STOPWORDS)
    if len(joined) <= size:
        return [joined] if joined else []
    return [joined[i : i + size] for i in range(len(joined) - size + 1)]


def skeleton(word: str) -> str:
    """A word's consonant skeleton in the spirit of Metaphone, with the sounds that Whisper and English
    spelling mix up merged: c/k/q/g/j → k (c before e/i/y → s), ph/f/v → f, s/z → s, x → ks, d/t → t,
    b/p → p, m/n → n, sh/ch → x, th → 0, silent gh/h/w/y dropped, vowels dropped except a leading one
    (``a``), doubled letters once. Digits stay as they are; other scripts give no key."""
    if word.isdigit():
        return word
    if not word.isalpha() or not word.isascii():
        return ""
    lead = "a" if word[0] in "aeiouy" else ""
    for a, b in _DIGRAPHS:
        word = word.replace(a, b)
    word = word.translate(_MERGE)
    out: list[str] = []
    for c in word:
        if c in "aeiouyhw":
            continue
        if not out or out[-1] != c:
            out.append(c)
    return lead + "".join(out)


_DIGRAPHS = (
    ("x", "ks"),
    ("ph", "f"),
    ("ck", "k"),
    ("sh", "x"),
    ("ch", "x"),
    ("th", "0"),
    ("gh", ""),
    ("kn", "n"),
    ("wr", "r"),
    ("ce", "se"),
    ("ci", "si"),
    ("cy", "sy"),
)
_MERGE = str.maketrans("cqzvdbgjmw", "kksftpkknw")


def _bm25(counts: Counter, length: int, params: Bm25Params) -> dict[str, float]:
    norm = params.k1 * (1.0 - params.b + params.b * length / params.avg_len)
    return {t: tf * (params.k1 + 1.0) / (tf + norm) for t, tf in counts.items()}


def document_vector(
    text: str | None,
    heard: str | None = None,
    *,
    params: Bm25Params = DEFAULT_BM25,
    phonetic_size: int = PHONETIC_GRAM,
) -> SparseVector | None:
    """The ``lexical`` vector of an item: BM25 weights of the terms of its ``text`` and of ``heard`` (the
    speech heard in its sound; give it only when the sound is speech), and of their phonetic terms of
    ``phonetic_size`` (weighted in the same way, over their own count; 0: none); None when there is no term."""
    source = " ".join(t for t in (text, heard) if t)
    weights: dict[int, float] = {}
    word_terms = terms(source)
    for term, weight in _bm25(Counter(word_terms), len(word_terms), params).items():
        weights[term_index(term)] = weight
    if phonetic_size:
        keys = phonetic_keys(source, phonetic_size)
        for key, weight in _bm25(Counter(keys), len(keys), params).items():
            weights[term_index(key, "p")] = weight
    return SparseVector.from_weights(weights) if weights else None


def query_vector(
    texts: str | Sequence[str],
    *,
    phonetic: float = 0.0,
    weights: Sequence[float] | None = None,
    phonetic_size: int = PHONETIC_GRAM,
) -> SparseVector | None:
    """A lexical query: 1 for each term of ``texts`` (several: e.g. a recogniser's n-best transcripts; a term
    then weighs the sum of the ``weights`` of the texts that hold it, 1 each by default), and, when
    ``phonetic`` > 0, that weight times ``phonetic`` for each phonetic key. None when there is no term."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    weights = list(weights) if weights is not None else [1.0] * len(texts)
    out: dict[int, float] = {}
    for text, weight in zip(texts, weights):
        _add(out, (term_index(t) for t in set(terms(text))), weight)
        if phonetic > 0:
            _add(out, (term_index(k, "p") for k in set(phonetic_keys(text, phonetic_size))), weight * phonetic)
    return SparseVector.from_weights(out) if out else None


def _add(out: dict[int, float], indices: Iterable[int], weight: float) -> None:
    for i in indices:
        out[i] = out.get(i, 0.0) + weight


def lexical_vectors(text: str | None, heard: str | None = None, *, enabled: bool = True) -> dict[str, SparseVector]:
    """``{"lexical": vector}`` of an item for its point's named vectors (empty when it has no term, or when not
    ``enabled``: a collection made before the ``lexical`` vector). ``heard``: speech only (see
    :func:`~mmalign.plugin.index.spoken.is_speech`)."""
    vector = document_vector(text, heard) if enabled else None
    return {LEXICAL_VECTOR: vector} if vector is not None else {}
