"""What an audio encoder heard travels: feature cache side table -> ingest payload (``heard``) -> search.

The real transcribing encoder (Whisper) is in tests/integration; here a tiny log-mel tower that also
"annotates" each clip stands in for it, so that the plumbing is tested with tiny towers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmalign.plugin.encoders.audio import LibrosaAudioEncoder
from mmalign.plugin.features.annotations import AnnotationTable
from mmalign.schemas import Modality
from mmalign.schemas.query import SearchQuery


class AnnotatingLogmel(LibrosaAudioEncoder):
    """tiny-logmel that says what it 'heard': the clip's length (and nothing in a quiet clip)."""

    annotates = True

    def _encode_batch_annotated(self, batch):
        notes = [
            {"transcript": f"{len(w)} samples" if np.abs(w).max() > 0.01 else "", "speech_probability": 0.5}
            for w in batch
        ]
        return self._encode_batch(batch), notes


@pytest.fixture
def annotating(monkeypatch):
    from mmalign.plugin.encoders import factory

    monkeypatch.setitem(factory.KINDS, "librosa_audio", (__name__, "AnnotatingLogmel"))


def test_annotation_table_keys_by_content_and_survives_a_torn_line(tmp_path, tiny_preset):
    from mmalign.plugin.encoders.registry import get_encoder_spec

    spec = get_encoder_spec("tiny-logmel")
    table = AnnotationTable(tmp_path)
    assert table.read(Modality.AUDIO, spec, {"a": "h1"}) == {}
    assert table.write(Modality.AUDIO, spec, ["a", "b", "c"], ["h1", "h2", "h3"], [{"t": "x"}, {"t": "y"}, {}]) == 2
    assert table.read(Modality.AUDIO, spec, {"a": "h1", "b": "other", "c": "h3"}) == {"a": {"t": "x"}}
    table.write(Modality.AUDIO, spec, ["a"], ["h9"], [{"t": "newer"}])
    assert table.read(Modality.AUDIO, spec, {"a": "h9"}) == {"a": {"t": "newer"}}
    with open(table.path(Modality.AUDIO, spec), "a") as handle:
        handle.write('{"item_id": "d", "content_h')  # a writer killed mid-line
    assert table.read(Modality.AUDIO, spec, {"a": "h9", "d": "h"}) == {"a": {"t": "newer"}}
    table.write(Modality.AUDIO, spec, ["e"], ["h5"], [{"t": "after"}])  # starts on a new line
    assert table.read(Modality.AUDIO, spec, {"e": "h5", "a": "h9"}) == {"e": {"t": "after"}, "a": {"t": "newer"}}


def test_heard_reaches_the_payload_and_the_search(trained, store, tmp_path, annotating):
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.index.search import Searcher

    base, catalog = trained
    features = tmp_path / "features"  # a cache of its own: the shared one holds features without transcripts
    report = ingest(
        catalog, bundle=base / "bundle", collection="items", store=store, features_dir=features, device="cpu"
    )
    assert report.failed == 0
    with_audio, without = store.retrieve("items", ["item0", "item1"])
    assert with_audio.payload["heard"].endswith("samples") and "heard" not in without.payload
    again = ingest(
        catalog, bundle=base / "bundle", collection="items", store=store, features_dir=features, device="cpu"
    )
    assert again.unchanged == report.ok  # nothing re-encoded, payloads kept
    lines = catalog.read_text().splitlines()
    first = json.loads(lines[0])
    first["metadata"]["group"] = "edited"
    edited = catalog.parent / "edited-meta.jsonl"
    edited.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    ingest(edited, bundle=base / "bundle", collection="items", store=store, features_dir=features, device="cpu")
    [point] = store.retrieve("items", ["item0"])
    assert point.payload["metadata"]["group"] == "edited" and point.payload["heard"] == with_audio.payload["heard"]

    with Searcher("items", store=store, bundle=base / "bundle", device="cpu") as searcher:
        result = searcher.run(SearchQuery(audio=[catalog.parent / "snd3.wav"], using="text", k=3))
        assert len(result.hits) == 3
        assert [h.as_dict() for h in result.heard] == [
            {"audio": str(catalog.parent / "snd3.wav"), "transcript": "2400 samples", "speech_probability": 0.5}
        ]
        assert searcher.run(SearchQuery(text=["a red frog"], k=2)).heard == []  # text: nothing heard


def test_cli_search_json_shows_what_was_heard(trained, tmp_path, annotating):
    from click.testing import CliRunner

    from mmalign.plugin.cli import main

    base, catalog = trained
    qdrant, features = str(tmp_path / "q"), str(tmp_path / "f")
    runner = CliRunner()
    args = ["--qdrant-path", qdrant]
    result = runner.invoke(
        main,
        [
            "ingest",
            str(catalog),
            "--bundle",
            str(base / "bundle"),
            "--collection",
            "c",
            "--features",
            features,
            "--device",
            "cpu",
            *args,
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        main, ["search", "--collection", "c", "--audio", str(catalog.parent / "snd0.wav"), "--json", "-k", "2", *args]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["heard"][0]["transcript"] == "2400 samples" and len(body["hits"]) == 2
    assert {"id", "score", "payload"} <= set(body["hits"][0])
    result = runner.invoke(main, ["search", "--collection", "c", "--audio", str(catalog.parent / "snd0.wav"), *args])
    assert result.exit_code == 0 and "heard in " in result.output and '"2400 samples"' in result.output
    result = runner.invoke(main, ["search", "--collection", "c", "--text", "a red frog", "--json", "-k", "2", *args])
    assert isinstance(json.loads(result.output), list)  # no audio query: the list of hits, as before


class TranscribingLogmel(AnnotatingLogmel):
    """tiny-logmel that 'hears' a text per tone (TRANSCRIPTS: frequency -> words); its transcriber embeds
    transcripts with tiny-bert and scores texts by the words they share with what was heard."""

    TRANSCRIPTS: dict[int, str] = {}
    SPEECH = 0.9  # the speech probability it reports

    def __init__(self, spec, device="auto"):
        super().__init__(spec, device)
        from types import SimpleNamespace

        from mmalign.plugin.encoders import build_encoder
        from mmalign.plugin.encoders.registry import get_encoder_spec

        text_spec = get_encoder_spec("tiny-bert")
        self.transcriber = SimpleNamespace(
            spec=SimpleNamespace(text_encoder=text_spec),
            text_encoder=build_encoder(text_spec, device="cpu"),
            load_input=self.load_input,
            text_log_likelihoods=self.text_log_likelihoods,
        )

    def heard(self, wave) -> str:
        spectrum = np.abs(np.fft.rfft(wave))
        freq = int(round(np.argmax(spectrum) * self.spec.sample_rate / len(wave) / 40) * 40)
        return self.TRANSCRIPTS.get(freq, "")

    def _encode_batch_annotated(self, batch):
        return self._encode_batch(batch), [
            {"transcript": self.heard(w), "speech_probability": self.SPEECH} for w in batch
        ]

    def text_log_likelihoods(self, wave, texts):
        words = set(self.heard(wave).split())
        return np.array([len(words & set(t.split())) - 0.01 * len(t.split()) for t in texts], dtype=np.float32)


@pytest.fixture
def transcribing(monkeypatch, trained):
    from mmalign.plugin.encoders import factory

    base, catalog = trained
    lines = [json.loads(line) for line in catalog.read_text().splitlines()]
    TranscribingLogmel.TRANSCRIPTS = {200 + 40 * i: row["text"] for i, row in enumerate(lines) if "audio" in row}
    monkeypatch.setitem(factory.KINDS, "librosa_audio", (__name__, "TranscribingLogmel"))
    return lines


def _searcher(trained, store, tmp_path):
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.index.search import Searcher

    base, catalog = trained
    ingest(catalog, bundle=base / "bundle", collection="items", store=store, features_dir=tmp_path / "f", device="cpu")
    return Searcher("items", store=store, bundle=base / "bundle", device="cpu")


def test_spoken_query_adds_the_text_tower_vector_of_its_transcript(trained, store, tmp_path, transcribing):
    from mmalign.schemas import Modality

    base, catalog = trained
    with _searcher(trained, store, tmp_path) as searcher:
        encoder = searcher.encoder.encoder(Modality.AUDIO)
        wave = encoder.load_input(catalog.parent / "snd3.wav", "q")
        audio = searcher.bundle.embed(Modality.AUDIO, encoder.encode([wave]))[0]
        tower = encoder.transcriber.text_encoder
        text = searcher.bundle.embed(Modality.TEXT, tower.encode([transcribing[3]["text"]]))[0]
        encoded = searcher.encoder.embed(Modality.AUDIO, catalog.parent / "snd3.wav")
        np.testing.assert_allclose(encoded.vector, (audio + text) / np.linalg.norm(audio + text), rtol=1e-5, atol=1e-6)
        assert encoded.heard.transcript == transcribing[3]["text"]
        other = encoder.transcriber.spec.text_encoder.model_copy(update={"max_length": 7})  # not the bundle's
        encoder.transcriber.spec.text_encoder = other
        plain = searcher.encoder.embed(Modality.AUDIO, catalog.parent / "snd3.wav")
        np.testing.assert_allclose(plain.vector, audio, atol=1e-6)


def test_rerank_spoken_orders_the_top_hits_by_what_was_said(trained, store, tmp_path, transcribing):
    from mmalign.plugin.index.search import search_query

    base, catalog = trained
    clip = catalog.parent / "snd6.wav"
    with _searcher(trained, store, tmp_path) as searcher:
        wanted = transcribing[6]["text"]
        plain = searcher.search(audio=[clip], using="text", k=3)
        reranked = searcher.run(search_query(audio=[clip], using="text", k=3, rerank_spoken=36)).hits
        assert len(reranked) == 3 and reranked[0].payload["text"] == wanted
        assert {h.id for h in plain} != {h.id for h in reranked} or plain[0].payload["text"] == wanted
        both = searcher.run(search_query(audio=[clip], text=["a red frog"], k=3, rerank_spoken=36)).hits
        assert len(both) == 3  # several inputs: fused by RRF, not re-ranked
        with pytest.raises(ValueError, match="rerank_spoken"):
            search_query(audio=[clip], rerank_spoken=-1)


def test_the_service_answers_a_spoken_query_like_the_searcher(trained, store, tmp_path, transcribing):
    """The service's batched encoding adds what was heard too (its vectors are the Searcher's)."""
    from mmalign.schemas import Modality

    base, catalog = trained
    with _searcher(trained, store, tmp_path) as searcher:
        clips = [str(catalog.parent / f"snd{i}.wav") for i in (3, 6)]
        served = searcher.encoder.embed_batch("audio", clips)
        for n, (clip, encoded) in enumerate(zip(clips, served)):
            assert encoded.heard.transcript == transcribing[(3, 6)[n]]["text"]
            alone = searcher.encoder.embed(Modality.AUDIO, clip)
            np.testing.assert_allclose(encoded.vector, alone.vector, rtol=1e-5, atol=1e-6)


def test_a_searcher_answers_encoded_inputs_with_what_was_heard(trained, store, tmp_path, transcribing):
    """The service hands its batched encodings to Searcher.run: what was heard comes back with the hits."""
    from mmalign.plugin.index.search import search_query

    base, catalog = trained
    clip = str(catalog.parent / "snd3.wav")
    with _searcher(trained, store, tmp_path) as searcher:
        [encoded] = searcher.encoder.embed_batch("audio", [clip])
        result = searcher.run(search_query(audio=[clip], using="text", k=3), [encoded])
        assert [h.id for h in result.hits] == [h.id for h in searcher.search(audio=[clip], using="text", k=3)]
        assert result.heard == [encoded.heard] and result.heard[0].transcript == transcribing[3]["text"]


def test_hits_are_rescored_by_what_was_heard():
    from mmalign.plugin.index.search import Hit
    from mmalign.plugin.index.spoken import char_ngrams, rescore_by_transcript, text_match

    assert text_match(char_ngrams("A black word."), char_ngrams("A blackbird.")) > 0.5
    assert text_match(char_ngrams("A black word."), char_ngrams("A fire truck.")) < 0.3
    assert text_match(char_ngrams(""), char_ngrams("A frog.")) == 0.0
    hits = [
        Hit(id="truck", score=0.9, payload={"text": "A fire truck."}),
        Hit(id="bird", score=0.5, payload={"text": "A blackbird."}),
        Hit(id="none", score=0.8, payload={}),
    ]
    best = rescore_by_transcript(hits, "a black word", k=2)
    assert [h.id for h in best] == ["bird", "truck"] and best[0].score <= 1.0
    assert [h.id for h in rescore_by_transcript(hits, "a black word", k=3, weight=0.0)] == ["truck", "none", "bird"]


def test_a_spoken_query_finds_the_text_it_heard(trained, store, tmp_path, transcribing, monkeypatch):
    base, catalog = trained
    clip = catalog.parent / "snd6.wav"
    with _searcher(trained, store, tmp_path) as searcher:
        matched = searcher.search(audio=[clip], using="image", k=3)
        assert matched[0].payload["text"] == transcribing[6]["text"]
        # what was heard plays no part: no re-scoring and no lexical branch (the words heard would feed it)
        plain = searcher.run(SearchQuery(audio=[clip], using="image", k=3, match_heard=False, mode="dense")).hits
        assert len(plain) == 3 and [h.score for h in plain] == sorted((h.score for h in plain), reverse=True)
        monkeypatch.setattr(TranscribingLogmel, "SPEECH", 0.3)  # words "heard" in what is probably not speech
        unsure = searcher.search(audio=[clip], using="image", k=3)
        assert [(h.id, h.score) for h in unsure] == [(h.id, h.score) for h in plain]
