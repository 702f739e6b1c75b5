"""Dense, lexical and hybrid search through the library: ingest writes the ``lexical`` vector, a rare exact
word is found first, a misheard spoken query still finds its item, only speech is matched, and reembed gives
an older collection the lexical vector without re-encoding media."""

import numpy as np
import pytest

from mmalign.connectors.errors import StoreError
from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.ingest import ingest
from mmalign.plugin.index.lexical import document_vector, lexical_vectors, phonetic_keys, query_vector, terms
from mmalign.plugin.index.query_encoder import Encoded, Heard
from mmalign.plugin.index.search import Searcher, lexical_query, search_query
from mmalign.plugin.index.spoken import is_speech, speech_heard
from tests.words_catalog import TEXTS, write_words_catalog


@pytest.fixture
def words_catalog(tmp_path):
    return write_words_catalog(tmp_path)


def _ingest(trained, store, catalog, **kw):
    base, _ = trained
    return ingest(
        catalog, bundle=base / "bundle", collection="words", store=store, features_dir=base / "features", **kw
    )


def test_terms_fold_case_accents_stop_words_and_plurals():
    assert terms("The Café's GLASSES and Berries; foxes, bus") == ["cafe", "glass", "berry", "fox", "bus"]
    assert terms("model LP-100") == ["model", "lp", "100"]
    assert query_vector("the of a") is None and document_vector("") is None
    assert phonetic_keys("umbrella") == phonetic_keys("UMBRELLAS")


def test_a_rare_exact_word_is_found_first_in_every_mode_with_words(trained, store, words_catalog):
    _ingest(trained, store, words_catalog)
    [point] = store.retrieve("words", ["w7"], with_vectors=["lexical"])
    assert point.vector["lexical"] == document_vector(TEXTS[7])
    searcher = Searcher("words", store=store, device="cpu")
    for mode in ("lexical", "hybrid"):
        result = searcher.run(search_query(text=["LP-100"], mode=mode, k=3))
        assert result.mode == mode and result.hits[0].id == "w7", mode
    default = searcher.run(search_query(text=["LP-100"], k=3))
    assert default.mode == "hybrid" and default.hits[0].id == "w7"  # the default for typed words
    assert searcher.run(search_query(image=[str(words_catalog.parent / "img3.png")], k=3)).mode == "dense"
    assert searcher.run(search_query(text=["the of"], mode="lexical")).hits == []  # nothing to match
    assert searcher.run(search_query(text=["umbrella"], mode="lexical", k=5)).hits[0].id == "w2"


def test_filters_apply_to_both_branches(trained, store, words_catalog):
    _ingest(trained, store, words_catalog)
    searcher = Searcher("words", store=store, device="cpu")
    for mode in ("lexical", "hybrid", "dense"):
        for fusion in ("rrf", "dbsf"):
            query = search_query(text=["fire truck"], mode=mode, hybrid_fusion=fusion, filters={"group": "odd"}, k=6)
            hits = searcher.run(query).hits
            assert hits and all(h.payload["metadata"]["group"] == "odd" for h in hits), (mode, fusion)
    assert searcher.run(search_query(text=["fire"], mode="lexical", filters={"group": "odd"})).hits[0].id == "w1"


def _spoken(searcher, transcript: str, speech_probability: float, mode=None):
    """A spoken query whose recogniser heard ``transcript`` (its vector: a constant, so only words decide)."""
    vector = np.ones(searcher.bundle.dim, dtype=np.float32) / np.sqrt(searcher.bundle.dim)
    heard = Heard("clip.wav", transcript, speech_probability)
    return searcher.run(search_query(audio=["clip.wav"], mode=mode, k=3), [Encoded(vector, heard)])


def test_a_misheard_spoken_query_still_finds_its_item(trained, store, words_catalog):
    """Whisper heard "Sarn glasses" for "sunglasses" and "I'm brella" for "umbrella": no word is spelled
    as in the item's text, but their sounds are close, and the phonetic keys match collection-wide."""
    _ingest(trained, store, words_catalog)
    searcher = Searcher("words", store=store, device="cpu")
    assert not set(terms("Sarn glasses")) & set(terms(TEXTS[3]))
    for transcript, item in (("Sarn glasses", "w3"), ("I'm brella", "w2"), ("Dark face", "w6")):
        assert _spoken(searcher, transcript, 0.9, mode="lexical").hits[0].id == item, transcript
        hybrid = _spoken(searcher, transcript, 0.9)  # the default; its dense branch here ranks at random
        assert hybrid.mode == "hybrid" and item in [h.id for h in hybrid.hits[:3]], transcript


def test_words_heard_in_a_sound_effect_are_not_matched(trained, store, words_catalog):
    _ingest(trained, store, words_catalog)
    searcher = Searcher("words", store=store, device="cpu")
    assert _spoken(searcher, "fire truck", 0.2).mode == "dense"  # not speech: no lexical branch
    assert lexical_query([], [Heard("a.wav", "fire truck", 0.2)]) is None
    assert not is_speech("BAM BAM!", 0.3) and is_speech("a fire truck", 0.6) and not is_speech("", 0.99)
    assert speech_heard({"transcript": "BAM BAM!", "speech_probability": 0.3}) == ""
    assert speech_heard({"transcript": "A frog.", "speech_probability": 0.95}) == "A frog."
    assert lexical_vectors("A frog.", None) == {"lexical": document_vector("A frog.")}
    assert lexical_vectors("A frog.", None, enabled=False) == {}


def _without_lexical(monkeypatch):
    """Collections created as before lexical search (no sparse vector)."""
    original = VectorStore.create_collection

    def create(self, *args, **kw):
        return original(self, *args, **{**kw, "sparse_vectors": ()})

    monkeypatch.setattr(VectorStore, "create_collection", create)


def test_reembed_adds_lexical_to_an_older_collection_without_reencoding(trained, store, words_catalog, monkeypatch):
    from mmalign.plugin.index import reembed as reembed_module

    base, _ = trained
    _without_lexical(monkeypatch)
    _ingest(trained, store, words_catalog)
    monkeypatch.undo()
    assert store.sparse_vectors("words") == []
    searcher = Searcher("words", store=store, device="cpu")
    assert searcher.run(search_query(text=["LP-100"])).mode == "dense"  # the default falls back
    wanted = r"reembed\('words', bundle=BUNDLE\) \(CLI: `mmalign reembed --collection words --bundle BUNDLE`\)"
    with pytest.raises(StoreError, match=wanted):
        searcher.run(search_query(text=["LP-100"], mode="lexical"))

    def no_encoding(*args, **kw):
        raise AssertionError("reembed encoded media")

    before = {p.payload["item_id"]: p.vector for p in store.scroll("words", with_vectors=True)}
    with monkeypatch.context() as patched:
        patched.setattr("mmalign.plugin.encoders.build_encoder", no_encoding)
        patched.setattr("mmalign.plugin.index.ingest.ingest", no_encoding)
        report = reembed_module.reembed("words", bundle=base / "bundle", store=store, features_dir=base / "features")
    assert (report.mode, report.swapped, report.written) == ("lexical", True, len(TEXTS))
    assert store.resolve_alias("words") == "words__v2" and store.sparse_vectors("words") == ["lexical"]
    after = {p.payload["item_id"]: p.vector for p in store.scroll("words", with_vectors=True)}
    assert after.keys() == before.keys()
    for item, vectors in before.items():
        assert after[item].keys() == vectors.keys()
        for name in vectors:
            np.testing.assert_allclose(after[item][name], vectors[name], atol=1e-6)  # copied, not recomputed
    fresh = Searcher("words", store=store, device="cpu")
    assert fresh.run(search_query(text=["LP-100"], mode="lexical")).hits[0].id == "w7"
    again = reembed_module.reembed("words", bundle=base / "bundle", store=store, features_dir=base / "features")
    assert again.already_live  # the lexical vector is there now: nothing to do


def test_the_n_best_list_lets_a_lower_hypothesis_find_the_item(trained, store, words_catalog):
    """Greedy decoding heard "Hi, Peter." for "umbrella"; the beam's other hypotheses hold what matches."""
    _ingest(trained, store, words_catalog)
    searcher = Searcher("words", store=store, device="cpu")
    vector = np.ones(searcher.bundle.dim, dtype=np.float32) / np.sqrt(searcher.bundle.dim)
    hypotheses = [["Hi, Peter.", -1.2], ["Hi, Peter!", -1.4], ["Hi, umbrella.", -1.6]]
    heard = Heard("clip.wav", "Hi, Peter.", 0.8, {"hypotheses": hypotheses})
    query = search_query(audio=["clip.wav"], mode="lexical", k=3)
    assert searcher.run(query, [Encoded(vector, heard)]).hits[0].id == "w2"
    greedy_only = Heard("clip.wav", "Hi, Peter.", 0.8)
    assert "w2" not in [h.id for h in searcher.run(query, [Encoded(vector, greedy_only)]).hits]


def test_cli_search_takes_the_mode(trained, tmp_path):
    import json

    from click.testing import CliRunner

    from mmalign.plugin.cli import main
    from mmalign.schemas import StoreConfig

    base, _ = trained
    catalog = write_words_catalog(tmp_path / "words")
    qdrant = str(tmp_path / "q")
    with VectorStore(StoreConfig(path=qdrant)) as store:
        ingest(catalog, bundle=base / "bundle", collection="words", store=store, features_dir=base / "features")
    common = ["search", "--collection", "words", "--qdrant-path", qdrant, "--device", "cpu", "--json", "-k", "3"]
    for mode in ("lexical", "hybrid"):
        result = CliRunner().invoke(main, [*common, "--text", "LP-100", "--mode", mode])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)[0]["id"] == "w7"
    weighted = CliRunner().invoke(main, [*common, "--text", "fire", "--hybrid-fusion", "rrf", "--lexical-weight", "3"])
    assert weighted.exit_code == 0 and {h["id"] for h in json.loads(weighted.output)[:2]} == {"w0", "w1"}
    bad = CliRunner().invoke(main, [*common, "--text", "LP-100", "--mode", "bm25"])
    assert bad.exit_code != 0 and "'dense', 'lexical', 'hybrid'" in bad.output
