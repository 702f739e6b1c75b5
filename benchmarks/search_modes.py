"""Search modes: dense, lexical (BM25 on the ``lexical`` sparse vector) and hybrid (both, fused), per query kind.

    python -m benchmarks.search_modes prepare   [--data mmalign-data/search-bench]      (features, clips, transcripts)
    python -m benchmarks.search_modes run       [--seeds 0 1 2 3 4] [--out run.json]    (quality tables)
    python -m benchmarks.search_modes latency   [--points 100000] [--queries 300]       (p50/p99 on embedded Edge)
    python -m benchmarks.search_modes           (prepare if needed, run, latency)

Run from the repository root (``benchmarks/`` is not installed). Needs the tuxpaint stamps
(``apt-get install tuxpaint-stamps-default``), the Papirus icons (``papirus-icon-theme``), espeak-ng, and the
``offline`` weights.

Catalogs: the 950 tuxpaint stamps (image, text, 134 sound effects, 65 spoken descriptions by people) and the
5,785 Papirus icons (image, text: the icon's name, its kind and its aliases). Per seed, the catalog is split
65/15/20 (train/validation/test, by item: TrainConfig's fractions); the items of the written paraphrase
queries are always held out (in test, or in validation for a fixed fifth of them). The bundle is the
closed-form CCA of ``mmalign train`` (TrainConfig's rank, 64; ridge chosen on validation) fitted on the
training items. The searched collection holds the test items (an embedded Edge collection built with the
store's own code: dense vectors from the bundle, the ``lexical`` vector from plugin/index/lexical.py);
validation queries run against the validation items, to choose weights and spoken-query variants; nothing
is tuned on test.

Query kinds (a query's relevant items: every item of the collection whose text it was made from, so that
identically named stamps count as one answer):

- ``exact``: the item's name (tuxpaint: its text; Papirus: the icon name, the text before the first comma);
- ``partial``: a word group from the item's text, found in at most 3 items of the catalog (tuxpaint: one or
  two content words; Papirus: one of its aliases, the ``also ...`` part);
- ``paraphrase``: written descriptions that do not repeat the item's text (benchmarks/data/paraphrases.jsonl,
  117 per catalog);
- ``spoken-synth``: the item's text (tuxpaint) or name (Papirus: 200 items) said by espeak-ng in a voice
  that neither tuning nor training heard (tuning clips use other voices). Papirus's clips are made but not
  searched: no icon has audio, so its bundle has no audio projection and mmalign refuses an audio query;
- ``spoken-human``: tuxpaint's spoken descriptions (``NAME_desc.ogg``);
- ``sound``: tuxpaint's sound effects, against the fused vectors.

Modes: ``dense`` is search as it was before (text → fused; a spoken query: audio vector + transcript's text
vector, re-scored by the transcript match over its first 200 hits); ``lexical`` the BM25 branch alone;
``hybrid`` both branches (a prefetch each) fused by RRF or DBSF, with the lexical branch's RRF weight.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: Voices and speeds of the synthesised spoken queries: tuning clips (validation items) and test clips never
#: share a voice (the same sets as benchmarks/audio.py's training and query voices).
TUNE_VOICES = (("en-us", 160), ("en-gb", 150), ("en-us+f3", 170), ("en-029", 145))
TEST_VOICES = (("en-gb-x-rp", 135), ("en-gb-scotland", 175), ("en-us+f2", 150), ("en-us+m3", 185))
#: Papirus items that get spoken-name clips (a deterministic sample: Whisper costs ~0.1 s a clip here).
PAPIRUS_SPOKEN = 200
PARAPHRASES = Path(__file__).with_name("data") / "paraphrases.jsonl"
CATALOGS = ("tuxpaint", "papirus")
KINDS = ("exact", "partial", "paraphrase", "spoken-synth", "spoken-human", "sound")


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def _pick(item_id: str, voices, salt: str):
    return voices[_hash(f"{salt}:{item_id}") % len(voices)]


def speak(text: str, out: Path, voice: str, speed: int) -> Path:
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.wav")
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(tmp), text], check=True, capture_output=True
        )
        os.replace(tmp, out)
    return out


# -- catalogs and query sets ------------------------------------------------------------------------------
def catalog_paths(data: Path) -> dict[str, tuple[Path, Path]]:
    """Catalog file and media root of each catalog (written by prepare)."""
    from mmalign.connectors.datasets.papirus import find_theme_dir
    from mmalign.connectors.datasets.tuxpaint import find_stamps_dir

    return {
        "tuxpaint": (data / "tuxpaint.jsonl", find_stamps_dir()),
        "papirus": (data / "papirus.jsonl", find_theme_dir() / "64x64"),
    }


def item_name(catalog: str, item: dict) -> str:
    """What a user types as the item's name: tuxpaint's text, Papirus's icon name (its text up to the comma)."""
    text = item.get("text") or ""
    return text.split(",")[0].strip() if catalog == "papirus" else text


def _phrase(text: str) -> str:
    from mmalign.plugin.index.lexical import words

    return " " + " ".join(words(text)) + " "


def partial_queries(catalog: str, items: list[dict], max_items: int = 3) -> list[dict]:
    """Word groups from an item's text that at most ``max_items`` items contain (as whole words)."""
    from mmalign.plugin.index.lexical import STOPWORDS, words

    texts = {i["id"]: _phrase(i.get("text") or "") for i in items}
    candidates: dict[str, list[str]] = {}
    for item in items:
        text = item.get("text") or ""
        if catalog == "papirus":
            _, _, also = text.partition("; also ")
            groups = [g.strip() for g in also.split(";") if g.strip()]
            name = _phrase(item_name(catalog, item)).strip()
            groups = [g for g in groups if _phrase(g).strip() != name]
        else:
            content = [w for w in words(text) if w not in STOPWORDS]
            groups = [" ".join(content[i : i + 2]) for i in range(max(len(content) - 1, 0))] or content[:1]
            if len(content) >= 3:
                groups = [groups[_hash(item["id"]) % len(groups)]]
            if _phrase(" ".join(groups)).strip() == _phrase(text).strip():  # the whole name is not partial
                groups = content[:1] if len(content) > 1 else []
        for group in groups[:1]:
            candidates.setdefault(group, []).append(item["id"])
    out = []
    for group, owners in candidates.items():
        phrase = _phrase(group)
        if phrase.strip() == "":
            continue
        relevant = [i for i, t in texts.items() if phrase in t]
        if 0 < len(relevant) <= max_items:
            out.append({"query": group, "target": owners[0], "relevant": relevant})
    return out


def exact_queries(catalog: str, items: list[dict]) -> list[dict]:
    """One query per distinct name; relevant: every item of that name."""
    by_name: dict[str, list[str]] = {}
    for item in items:
        name = item_name(catalog, item)
        if name:
            by_name.setdefault(name, []).append(item["id"])
    return [{"query": name, "target": ids[0], "relevant": ids} for name, ids in by_name.items()]


def paraphrase_queries(catalog: str) -> list[dict]:
    rows = [json.loads(line) for line in PARAPHRASES.read_text().splitlines() if line.strip()]
    mine = [r for r in rows if r["catalog"] == catalog]
    return [{"query": r["query"], "target": r["item"], "relevant": [r["item"]]} for r in mine]


def paraphrase_holdout(catalog: str) -> tuple[set[str], set[str]]:
    """Paraphrase targets never trained on: (validation ones, test ones); a fixed fifth go to validation."""
    targets = [q["target"] for q in paraphrase_queries(catalog)]
    val = {t for t in targets if _hash(f"paraphrase:{t}") % 5 == 0}
    return val, set(targets) - val


# -- prepare ----------------------------------------------------------------------------------------------
def prepare_transcripts(args) -> int:
    """Only the n-best/prompted transcripts of the clips (after ``prepare`` wrote them and their features)."""
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.encoders.registry import get_encoder_spec, get_preset

    data = Path(args.data).resolve()
    items = {n: [json.loads(x) for x in (data / f"{n}.jsonl").read_text().splitlines() if x.strip()] for n in CATALOGS}
    clips = open_catalog(data / "clips.jsonl", media_root=Path("/"))
    transcribe_variants(data, clips, get_encoder_spec(get_preset("offline-small").audio), items)
    return 0


def prepare(args) -> int:
    from mmalign.connectors.datasets import papirus, tuxpaint
    from mmalign.connectors.datasets.jsonl import write_jsonl
    from mmalign.connectors.sources import open_catalog
    from mmalign.plugin.encoders.registry import get_encoder_spec, get_preset
    from mmalign.plugin.features.extract import extract_features
    from mmalign.schemas import Modality

    if subprocess.run(["which", "espeak-ng"], capture_output=True).returncode != 0:
        raise SystemExit("espeak-ng is needed: apt-get install -y espeak-ng")
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    features = Path(args.features).resolve()
    letters = data / "dead_letter.jsonl"
    roots = {}
    roots["tuxpaint"], tux_items = tuxpaint.write_catalog(data / "tuxpaint.jsonl")
    roots["papirus"], pap_items = papirus.write_catalog(data / "papirus.jsonl")
    items = {"tuxpaint": tux_items, "papirus": pap_items}
    preset = get_preset("offline-small")

    def encode_catalog(name: str) -> None:
        catalog = open_catalog(data / f"{name}.jsonl", media_root=roots[name])
        t0 = time.perf_counter()
        report = extract_features(
            catalog, catalog_features(args, name), modalities=["text", "image", "audio"], dead_letter=letters
        )
        print(f"{name}: features {_counts(report)} ({time.perf_counter() - t0:.0f}s)", flush=True)

    encode_catalog("tuxpaint")
    clips = []
    for name in CATALOGS:
        chosen = items[name]
        if name == "papirus":
            chosen = sorted(chosen, key=lambda i: _hash(f"spoken:{i['id']}"))[:PAPIRUS_SPOKEN]
        needed = clips_needed([i["id"] for i in items[name]], name, args.seeds)
        for item in chosen:
            said = item_name(name, item)
            for split, voices in (("tune", TUNE_VOICES), ("test", TEST_VOICES)):
                if item["id"] not in needed[split]:
                    continue
                voice, speed = _pick(item["id"], voices, split)
                path = data / "speech" / name / split / f"{_hash(item['id']):x}.wav"
                speak(said, path, voice, speed)
                clips.append({"id": f"{name}/{split}/{item['id']}", "audio": str(path), "metadata": {"voice": voice}})
            desc = item.get("metadata", {}).get("spoken_description")
            if desc:
                clips.append({"id": f"{name}/human/{item['id']}", "audio": str(roots[name] / desc)})
    write_jsonl(data / "clips.jsonl", clips)
    clip_catalog = open_catalog(data / "clips.jsonl", media_root=Path("/"))
    spec = get_encoder_spec(preset.audio)
    t0 = time.perf_counter()
    report = extract_features(clip_catalog, features, specs={Modality.AUDIO: spec}, batch_size=8, dead_letter=letters)
    print(f"clips: {preset.audio} {_counts(report)} ({time.perf_counter() - t0:.0f}s)", flush=True)
    transcribe_variants(data, clip_catalog, spec, items)
    encode_catalog("papirus")  # last: 5,785 icons through EfficientNet (about 30 min here)
    return 0


def clips_needed(item_ids: list[str], catalog: str, seeds) -> dict[str, set[str]]:
    """Items whose tuning clip (validation items of some seed) or test clip (test items) a run uses."""
    needed: dict[str, set[str]] = {"tune": set(), "test": set()}
    for seed in seeds:
        _, val, test = split_with_holdouts(item_ids, catalog, seed)
        needed["tune"].update(val)
        needed["test"].update(test)
    return needed


def catalog_features(args, name: str) -> Path:
    """The feature cache of a catalog: tuxpaint's stamps are in the project's cache already (the quickstart
    and benchmarks/audio.py encode them there); the rest go to ``--features``."""
    return Path(args.tux_features if name == "tuxpaint" else args.features).resolve()


def _counts(report) -> str:
    return ", ".join(
        f"{m.value}: {c.encoded} encoded, {c.cached} cached, {c.failed} failed" for m, c in report.modalities.items()
    )


#: Whisper's initial prompt of the ``prompt`` variants holds this many of a catalog's most frequent terms.
PROMPT_TERMS = 120


def catalog_prompt(texts: list[str], n: int = PROMPT_TERMS) -> str:
    """The ``n`` words of the catalog's texts found in most items (stop words left out), most frequent first."""
    from collections import Counter

    from mmalign.plugin.index.lexical import STOPWORDS, words

    df = Counter(w for t in texts for w in set(words(t)) if w not in STOPWORDS and not w.isdigit() and len(w) > 2)
    return ", ".join(w for w, _ in df.most_common(n))


#: Tuning clips that get n-best and prompted transcripts (beam search costs several greedy passes here).
VARIANT_CLIPS = 300


def variant_clips(clips) -> list:
    """The tuxpaint tuning clips of ``VARIANT_CLIPS`` items (a fixed sample by hash)."""
    tune = [r for r in clips.items() if r.id.startswith("tuxpaint/tune/")]
    return sorted(tune, key=lambda r: _hash(f"variant:{r.id}"))[:VARIANT_CLIPS]


def transcribe_variants(data: Path, clips, spec, items: dict) -> None:
    """n-best transcripts (beam 5, 5 hypotheses) of the variant clips (:func:`variant_clips`), without and with
    a prompt of the catalog's frequent terms: ``transcripts.json`` {variant: {clip id: [[text, mean log-prob],
    ...]}}; resumable."""
    from mmalign.plugin.encoders import build_encoder
    from mmalign.schemas import Modality

    path = data / "transcripts.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    transcriber = build_encoder(spec, device="cpu").transcriber
    prompts = {name: catalog_prompt([i.get("text") or "" for i in items[name]]) for name in CATALOGS}
    sample = variant_clips(clips)
    for variant in ("nbest", "prompt"):
        table = done.setdefault(variant, {})
        # n-best won on the tuning clips (docs/search.md): every clip gets it; the prompt only the sample
        rows = list(clips.items()) if variant == "nbest" else sample
        todo = [r for r in rows if r.id not in table]
        started, last = time.perf_counter(), time.perf_counter()
        for start in range(0, len(todo), 8):
            batch = todo[start : start + 8]
            by_catalog: dict[str, list] = {}
            for r in batch:
                by_catalog.setdefault(r.id.split("/")[0], []).append(r)
            for name, group in by_catalog.items():
                waves = [transcriber.load_input(clips.resolve(r, Modality.AUDIO), r.id) for r in group]
                found = transcriber.hypotheses(waves, prompt=prompts[name] if variant == "prompt" else None)
                table.update({r.id: hyps for r, hyps in zip(group, found)})
            if time.perf_counter() - last > 10:
                last = time.perf_counter()
                print(f"  {variant}: {start + len(batch)}/{len(todo)} clips ({last - started:.0f}s)", flush=True)
                path.write_text(json.dumps(done))
        path.write_text(json.dumps(done))
        print(f"transcripts {variant}: {len(table)} clips", flush=True)


# -- run ------------------------------------------------------------------------------------------------
#: Hybrid variants tried for typed queries: (label, fusion, lexical branch weight).
HYBRIDS = (("hybrid rrf", "rrf", 1.0), ("hybrid rrf w0.5", "rrf", 0.5), ("hybrid rrf w0.25", "rrf", 0.25))
HYBRIDS += (("hybrid rrf w2", "rrf", 2.0),)
HYBRIDS += (("hybrid dbsf", "dbsf", 1.0),)
#: Spoken-query variants of the lexical branch: (label, transcripts, hypotheses used, phonetic weight,
#: phonetic gram size, speech floor); "-heard": without the transcript match of the fused candidates.
SPOKEN = (
    ("words+phon0.5 -heard", "greedy", 1, 0.5, 3, 0.5),
    ("words -heard", "greedy", 1, 0.0, 3, 0.5),
    ("words", "greedy", 1, 0.0, 3, 0.5),
    ("words+phon0.25", "greedy", 1, 0.25, 3, 0.5),
    ("words+phon0.5", "greedy", 1, 0.5, 3, 0.5),
    ("words+phon1", "greedy", 1, 1.0, 3, 0.5),
    ("words+phon0.5 g2", "greedy", 1, 0.5, 2, 0.5),
    ("words+phon0.5 g4", "greedy", 1, 0.5, 4, 0.5),
    ("nbest5+phon0.5", "nbest", 5, 0.5, 3, 0.5),
    ("nbest5+phon0.5 dbsf", "nbest", 5, 0.5, 3, 0.5),
    ("nbest5+phon0.5 -heard", "nbest", 5, 0.5, 3, 0.5),
    ("nbest5 floor0", "nbest", 5, 0.5, 3, 0.0),
    ("nbest5 floor0.3", "nbest", 5, 0.5, 3, 0.3),
    ("beam1+phon0.5", "nbest", 1, 0.5, 3, 0.5),
    ("prompt1+phon0.5", "prompt", 1, 0.5, 3, 0.5),
    ("prompt5+phon0.5", "prompt", 5, 0.5, 3, 0.5),
    ("words+phon0.5 floor0", "greedy", 1, 0.5, 3, 0.0),
    ("words+phon0.5 floor0.3", "greedy", 1, 0.5, 3, 0.3),
    ("words+phon0.5 floor0.7", "greedy", 1, 0.5, 3, 0.7),
)
#: The spoken-query variant (the default's lexical branch) whose lexical branch is also measured alone.
LEXICAL_ALONE = "nbest5+phon0.5"
GRAMS = (2, 3, 4)
DEPTH = 100  # hits read per query: a relevant item beyond it counts as rank DEPTH


class Table:
    """(catalog, split, kind, target, variant) -> per-seed metrics."""

    def __init__(self):
        self.values: dict[tuple, list[dict]] = {}

    def add(self, key: tuple, ranks: list[int]) -> None:
        from mmalign.plugin.align.metrics import retrieval_metrics

        ranks = np.array(ranks, dtype=np.int64)
        metrics = retrieval_metrics(ranks)
        metrics["recall@50"] = float((ranks < 50).mean()) if len(ranks) else 0.0
        self.values.setdefault(key, []).append(metrics)

    def mean(self, key: tuple, metric: str) -> float:
        return float(np.mean([r[metric] for r in self.values[key]]))

    def cell(self, key: tuple, metric: str) -> str:
        v = np.array([r[metric] for r in self.values[key]])
        return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def _text_features(data: Path, strings: list[str]) -> dict[str, np.ndarray]:
    """MiniLM features of query strings, computed once and kept in ``query_text.npz``."""
    from mmalign.plugin.encoders import build_encoder
    from mmalign.plugin.encoders.registry import get_encoder_spec, get_preset

    path = data / "query_text.npz"
    have: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            have = dict(zip(z["strings"].tolist(), z["features"]))
    todo = sorted({s for s in strings if s not in have})
    if todo:
        encoder = build_encoder(get_encoder_spec(get_preset("offline-small").text), device="cpu")
        have.update(zip(todo, encoder.encode(todo, batch_size=64)))
        keys = sorted(have)
        np.savez(path, strings=np.array(keys), features=np.stack([have[k] for k in keys]))
    return {s: have[s] for s in strings}


def fit_split(paired, train_ids, val_ids, seed: int):
    """Closed-form CCA on the training items, ridge chosen on validation (as ``mmalign train`` starts)."""
    from mmalign.plugin.align.closed_form import fit_cca
    from mmalign.plugin.align.evaluation import evaluate_embedder, primary_metric
    from mmalign.plugin.align.student import build_student
    from mmalign.plugin.align.trainer import TorchEmbedder
    from mmalign.schemas import TrainConfig

    cfg = TrainConfig(seed=seed)
    train, val = paired.select(train_ids), paired.select(val_ids)
    best = None
    for reg in cfg.cca_regs:
        model = build_student(train.dims(), cfg, fit_cca(train, cfg.rank, reg, cfg.cca_power))
        score = primary_metric(evaluate_embedder("cca", TorchEmbedder(model, "cca"), val, with_fused=False))
        if best is None or score > best[0]:
            best = (score, model)
    return TorchEmbedder(best[1], "cca")


def split_with_holdouts(item_ids: list[str], catalog: str, seed: int) -> tuple[list[str], list[str], list[str]]:
    """train/val/test as ``mmalign train`` splits, with the paraphrase targets moved out of training."""
    from mmalign.plugin.features.paired import split_items
    from mmalign.schemas import TrainConfig

    cfg = TrainConfig(seed=seed)
    train, val, test = split_items(item_ids, cfg.test_fraction, cfg.val_fraction, seed)
    held_val, held_test = paraphrase_holdout(catalog)
    present = set(item_ids)
    val = [i for i in val if i not in held_test] + sorted((held_val & present) - set(val))
    test = [i for i in test if i not in held_val] + sorted((held_test & present) - set(test))
    out = held_val | held_test
    return [i for i in train if i not in out], val, test


def build_collection(store, name: str, embedder, paired, ids: list[str], texts, speech, grams: int) -> None:
    """The searched collection: the items' vectors as ingest makes them, and their ``lexical`` vectors."""
    from mmalign.connectors.store import PointData
    from mmalign.plugin.index.lexical import document_vector
    from mmalign.schemas import Modality

    part = paired.select(ids)
    fused = embedder.fuse(part)
    named = {}
    for m in (Modality.IMAGE, Modality.TEXT, Modality.AUDIO):
        if m in part.features:
            rows = np.flatnonzero(part.masks[m])
            named[m.value] = (rows, embedder.embed(m, part.features[m][rows]))
    points = []
    for n, item in enumerate(ids):
        vectors = {"fused": fused[n]}
        for key, (rows, matrix) in named.items():
            where = np.searchsorted(rows, n)
            if where < len(rows) and rows[where] == n:
                vectors[key] = matrix[where]
        lexical = document_vector(texts[item], speech.get(item) or None, phonetic_size=grams)
        if lexical is not None:
            vectors["lexical"] = lexical
        points.append(PointData(item, vectors, {"text": texts[item]}))
    store.create_collection(name, fused.shape[1])
    store.upsert(name, points)


def _rank(hits, relevant: set[str]) -> int:
    for n, h in enumerate(hits):
        if h.id in relevant:
            return n
    return DEPTH


def run(args) -> int:
    from mmalign.connectors.sources import open_catalog
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.encoders.registry import get_encoder_spec, get_preset
    from mmalign.plugin.features.cache import FeatureCache
    from mmalign.plugin.features.paired import load_paired
    from mmalign.schemas import Modality, StoreConfig

    data = Path(args.data).resolve()
    preset = get_preset("offline-small")
    specs = {m: get_encoder_spec(getattr(preset, m.value)) for m in Modality}
    clip_cache = FeatureCache(Path(args.features).resolve())
    clips = open_catalog(data / "clips.jsonl", media_root=Path("/"))
    found = data / "transcripts.json"
    variants = json.loads(found.read_text()) if found.exists() else {"nbest": {}, "prompt": {}}
    spoken_kinds = [k for k in args.kinds if k in ("spoken-synth", "spoken-human", "sound")]
    table = Table()
    for name in args.catalogs:
        path, root = catalog_paths(data)[name]
        catalog = open_catalog(path, media_root=root)
        raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        texts = {i["id"]: i.get("text") or "" for i in raw}
        names = {i["id"]: item_name(name, i) for i in raw}
        cache = FeatureCache(catalog_features(args, name))
        present = {m for i in raw for m in ("image", "text", "audio") if i.get(m)}
        paired = load_paired(cache, {m: s for m, s in specs.items() if m.value in present}, list(texts))
        spoken = SpokenSet.load(name, clips, clip_cache, specs[Modality.AUDIO], variants, catalog, cache)
        typed = {
            "exact": exact_queries(name, raw),
            "partial": partial_queries(name, raw),
            "paraphrase": paraphrase_queries(name),
        }
        typed = {k: v for k, v in typed.items() if k in args.kinds}
        features = _text_features(data, [q["query"] for qs in typed.values() for q in qs])
        print(f"{name}: {len(paired)} items; " + ", ".join(f"{k} {len(v)}" for k, v in typed.items()), flush=True)
        spoken_here = spoken_kinds if "audio" in present else []
        if spoken_kinds and not spoken_here:  # mmalign refuses a spoken query where the bundle has no audio
            print(f"{name}: {', '.join(spoken_kinds)} skipped: no item has audio, so its bundle has no audio")
            print("  projection, and mmalign refuses an audio query against it (QueryEncoder)", flush=True)
        if not typed and not spoken_here:
            continue
        for seed in args.seeds:
            t0 = time.perf_counter()
            train_ids, val_ids, test_ids = split_with_holdouts(paired.item_ids, name, seed)
            embedder = fit_split(paired, train_ids, val_ids, seed)
            for split, ids in (("val", val_ids), ("test", test_ids)):
                with VectorStore(StoreConfig(path=":memory:", engine="edge")) as store:
                    for grams in GRAMS if spoken_here else (3,):  # other gram sizes: spoken variants only
                        build_collection(store, f"g{grams}", embedder, paired, ids, texts, spoken.speech, grams)
                    evaluate_typed(table, store, (name, split), embedder, typed, features, set(ids))
                    if spoken_here:
                        spoken.evaluate(table, store, (name, split), embedder, set(ids), names, spoken_here)
            print(f"  seed {seed}: {time.perf_counter() - t0:.0f}s", flush=True)
            if args.out:  # after every seed: a run stopped early keeps what it measured
                Path(args.out).write_text(json.dumps({"|".join(k): v for k, v in table.values.items()}, indent=1))
    print_tables(table, args)
    return 0


def report(args) -> int:
    """The tables of runs written with ``--out`` (several files: e.g. a typed-query run and a spoken one)."""
    table = Table()
    for path in args.runs:
        for key, runs in json.loads(Path(path).read_text()).items():
            table.values.setdefault(tuple(key.split("|")), []).extend(runs)
    print_tables(table, args)
    return 0


def evaluate_typed(table: Table, store, key: tuple, embedder, typed: dict, features: dict, ids: set[str]) -> None:
    from mmalign.plugin.index.lexical import query_vector
    from mmalign.plugin.index.search import answer, search_query
    from mmalign.schemas import Modality

    modes = [("dense", "dense", "rrf", 1.0), ("lexical", "lexical", "rrf", 1.0)]
    modes += [(label, "hybrid", fusion, w) for label, fusion, w in HYBRIDS]
    for kind, queries in typed.items():
        queries = [q for q in queries if set(q["relevant"]) & ids]
        if not queries:
            continue
        vectors = embedder.embed(Modality.TEXT, np.stack([features[q["query"]] for q in queries]))
        for label, mode, fusion, weight in modes:
            ranks = []
            for q, vector in zip(queries, vectors):
                query = search_query(text=[q["query"]], k=DEPTH, mode=mode, hybrid_fusion=fusion, lexical_weight=weight)
                found = answer(store, "g3", query, [vector], has_lexical=True, lexical=query_vector(q["query"]))
                ranks.append(_rank(found.hits, set(q["relevant"]) & ids))
            table.add((*key, kind, "fused", label), ranks)


class SpokenSet:
    """The spoken query clips of one catalog (and its sound effects): audio features, what was heard."""

    def __init__(self, clips: dict, sounds: dict, speech: dict, nbest: dict, text_part):
        self.clips, self.sounds, self.speech, self.nbest, self.text_part = clips, sounds, speech, nbest, text_part

    @classmethod
    def load(cls, name, clip_catalog, clip_cache, spec, variants, catalog, cache) -> SpokenSet:
        from benchmarks.audio import audio_rows, text_part_of, transcripts
        from mmalign.plugin.index.spoken import is_speech

        rows, heard = audio_rows(clip_catalog, clip_cache, spec), transcripts(clip_catalog, clip_cache, spec)
        clips: dict[str, dict] = {"spoken-synth": {}, "spoken-human": {}}
        for clip_id, row in rows.items():
            catalog_name, kind, item = clip_id.split("/", 2)
            if catalog_name != name or clip_id not in heard:
                continue
            target = {"tune": "spoken-synth", "test": "spoken-synth", "human": "spoken-human"}[kind]
            clips[target].setdefault(kind, {})[item] = (row, heard[clip_id], clip_id)
        own_rows, own_heard = audio_rows(catalog, cache, spec), transcripts(catalog, cache, spec)
        sounds = {i: (row, own_heard.get(i, ("", 0.0)), i) for i, row in own_rows.items()}
        speech = {i: t for i, (t, p) in own_heard.items() if is_speech(t, p)}
        return cls(clips, sounds, speech, variants, text_part_of(spec))

    def _queries(self, kind: str, split: str, ids: set[str]) -> list:
        """(item, row, (transcript, speech probability), clip id): tuning clips for validation, test voices for
        test; people's descriptions in both."""
        if kind == "sound":
            chosen = self.sounds
        elif kind == "spoken-human":
            chosen = self.clips["spoken-human"].get("human", {})
        else:
            chosen = self.clips["spoken-synth"].get("tune" if split == "val" else "test", {})
        return [(i, *entry) for i, entry in sorted(chosen.items()) if i in ids]

    def evaluate(self, table: Table, store, key: tuple, embedder, ids: set[str], names: dict, kinds) -> None:
        """Each spoken query (and sound effect) of ``kinds`` whose item is in ``ids``: ``dense`` as search did
        before, then the lexical branch's variants in hybrid mode. Relevant: the items of the same name."""
        from benchmarks.audio import query_vectors
        from mmalign.plugin.index.lexical import query_vector
        from mmalign.plugin.index.query_encoder import Heard
        from mmalign.plugin.index.search import answer, search_query
        from mmalign.plugin.index.spoken import is_speech

        for kind in kinds:
            queries = self._queries(kind, key[1], ids)
            if not queries:
                continue
            vectors = query_vectors(embedder, np.stack([q[1] for q in queries]), self.text_part)
            targets = ("fused",) if kind == "sound" else ("text", "fused")
            for target in targets:
                dense, alone, runs = [], [], {label: [] for label, *_ in SPOKEN}
                for (item, _, (said, probability), clip_id), vector in zip(queries, vectors):
                    relevant = {i for i in ids if names[i] == names[item]}
                    heard = Heard(clip_id, said, probability)
                    base = search_query(audio=["clip"], using=target, k=DEPTH, mode="dense")
                    dense.append(_rank(answer(store, "g3", base, [vector], [heard], has_lexical=True).hits, relevant))
                    for label, source, n, phonetic, grams, floor in SPOKEN:
                        if source == "greedy":
                            hyps, weights = [said], [1.0]
                        else:
                            found = self.nbest[source].get(clip_id) or [[said, 0.0]]
                            hyps = [h[0] for h in found[:n]]
                            scores = np.exp([h[1] for h in found[:n]])
                            weights = list(scores / scores.sum())
                        lexical = None
                        if is_speech(hyps[0], probability, floor):
                            lexical = query_vector(hyps, phonetic=phonetic, weights=weights, phonetic_size=grams)
                        query = search_query(
                            audio=["clip"],
                            using=target,
                            k=DEPTH,
                            mode="hybrid",
                            match_heard="-heard" not in label,
                            hybrid_fusion="dbsf" if label.endswith("dbsf") else "rrf",
                        )
                        if lexical is None:
                            query = base
                        found = answer(store, f"g{grams}", query, [vector], [heard], has_lexical=True, lexical=lexical)
                        runs[label].append(_rank(found.hits, relevant))
                        if label == LEXICAL_ALONE:  # the lexical branch of the default alone (no speech: no hit)
                            lone = search_query(audio=["clip"], using=target, k=DEPTH, mode="lexical")
                            if lexical is None:
                                alone.append(DEPTH)
                                continue
                            found = answer(store, "g3", lone, [vector], [heard], has_lexical=True, lexical=lexical)
                            alone.append(_rank(found.hits, relevant))
                table.add((*key, kind, target, "dense (before)"), dense)
                table.add((*key, kind, target, f"lexical {LEXICAL_ALONE}"), alone)
                for label, ranks in runs.items():
                    table.add((*key, kind, target, f"hybrid {label}"), ranks)


# -- latency ----------------------------------------------------------------------------------------------
#: Version of the cached latency store's contents: a change of how points are made must bump it.
LATENCY_STORE_VERSION = 2


def varied_texts(n: int, real: list[str], seed: int = 0) -> list[str]:
    """``n`` item texts made from the ``real`` ones: the first ``len(real)`` as they are, every later one a
    real text plus one word of another real text (so copies differ, and a word's spread over items stays
    that of the catalogs' words)."""
    from mmalign.plugin.index.lexical import words

    rng = np.random.default_rng(seed)
    base = rng.integers(0, len(real), n)
    donor = rng.integers(0, len(real), n)
    out = []
    for i in range(n):
        if i < len(real):
            out.append(real[i])
            continue
        extra = words(real[donor[i]]) or ["more"]
        out.append(f"{real[base[i]]} {extra[int(rng.integers(0, len(extra)))]}")
    return out


def latency_store(folder: Path, points: int, texts: list[str]):
    """The latency benchmark's Edge store in ``folder``: built (upsert + index) unless a finished build of the
    same points is there; returns (open store, query centres, build figures)."""
    from benchmarks.store_engines import DIM, make_items, point_vectors
    from mmalign.connectors.store import PointData, VectorStore
    from mmalign.plugin.index.lexical import document_vector
    from mmalign.schemas import StoreConfig

    marker = folder / "built.json"
    wanted = {"version": LATENCY_STORE_VERSION, "points": points}
    if marker.exists():
        built = json.loads(marker.read_text())
        if {k: built.get(k) for k in wanted} == wanted:
            vs = VectorStore(StoreConfig(path=str(folder / "store"), engine="edge"))
            if vs.collection_exists("bench") and vs.count("bench") == points:
                print(f"  reusing the store built in {folder} (upsert {built['upsert_s']:.0f}s)", flush=True)
                return vs, np.load(folder / "centres.npy"), {**built, "reused": True}
            vs.close()
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ids, vectors, payloads, centres = make_items(points)
    np.save(folder / "centres.npy", centres)
    vs = VectorStore(StoreConfig(path=str(folder / "store"), engine="edge"))
    vs.create_collection("bench", DIM, bundle_id="bench-bundle")
    t0, last, step = time.perf_counter(), time.perf_counter(), 4096
    for start in range(0, points, step):
        batch = []
        for i in range(start, min(start + step, points)):
            named = {**point_vectors(vectors, i), "lexical": document_vector(texts[i])}
            batch.append(PointData(ids[i], named, {**payloads[i], "text": texts[i]}))
        vs.upsert("bench", batch, batch_size=step)
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            print(f"  upserted {start + len(batch):,} points ({last - t0:.0f}s)", flush=True)
    built = {**wanted, "upsert_s": time.perf_counter() - t0}
    print(f"  upserted {points:,} points in {built['upsert_s']:.0f}s; building the index", flush=True)
    built["index_s"] = vs.build_index("bench").seconds
    marker.write_text(json.dumps(built))
    return vs, centres, {**built, "reused": False}


def latency(args) -> int:
    """p50/p99 of dense, lexical and hybrid top-10 queries on ``--points`` points in an Edge store on disk,
    after the store's own index build (HNSW on ``fused``).

    Dense vectors are synthetic (benchmarks/store_engines.py's clustered 256-d vectors and payloads): the
    dense branch's cost depends on the count and the graph, not on what the vectors mean. The ``lexical``
    vectors are real: every point holds the BM25 terms of a real item text of the two catalogs (tuxpaint's
    and Papirus's 6,735 texts, then copies each varied by one word of another real text), and the typed
    queries are the benchmark's real query texts (exact names, partial names, paraphrases of both
    catalogs), each with a synthetic dense query vector. The built store is kept under
    ``--data``/latency-store-N, so that a rerun skips the upsert and the index build. The three modes run
    interleaved (each query in every mode, in a rotating order), so that a load from other processes falls
    on all of them alike."""
    from dataclasses import replace

    from benchmarks.store_engines import make_queries, percentiles
    from mmalign.plugin.index.lexical import query_vector
    from mmalign.plugin.index.search import search_query, store_query

    data = Path(args.data).resolve()
    real, queries_text = [], []
    for name in CATALOGS:
        raw = [json.loads(line) for line in (data / f"{name}.jsonl").read_text().splitlines() if line.strip()]
        real += [i.get("text") or "" for i in raw if i.get("text")]
        for made in (exact_queries(name, raw), partial_queries(name, raw), paraphrase_queries(name)):
            queries_text += [q["query"] for q in made]
    rng = np.random.default_rng(7)
    typed = [queries_text[j] for j in rng.choice(len(queries_text), size=args.queries, replace=False)]
    texts = varied_texts(args.points, real)
    out: dict = {"points": args.points, "queries": args.queries, "load_start": os.getloadavg()}
    vs, centres, built = latency_store(data / f"latency-store-{args.points}", args.points, texts)
    out.update({k: built[k] for k in ("upsert_s", "index_s", "reused")})
    vectors = make_queries(centres, args.queries)
    lexical = [query_vector(t) for t in typed]
    # (row, mode, hits asked): the three modes at top 10, and hybrid's two branches alone at its prefetch depth
    depth = max(10 * 4, 50)  # store_query's prefetch limit of a top-10 hybrid query
    rows = [("dense", "dense", 10), ("lexical", "lexical", 10), ("hybrid", "hybrid", 10)]
    rows += [(f"dense top {depth}", "dense", depth), (f"lexical top {depth}", "lexical", depth)]
    rows += [("hybrid, prefetch 20", "hybrid", 10)]  # a shallower prefetch than the library's (speed only)
    requests = {m: search_query(text=["x"], k=10, mode=m) for m in ("dense", "lexical", "hybrid")}
    samples: dict[str, list[float]] = {row: [] for row, *_ in rows}
    empty = dict.fromkeys(samples, 0)
    with vs:

        def one(i: int, row: str, mode: str, limit: int) -> float:
            request, flt = store_query(requests[mode], [vectors[i]], lexical[i], mode, limit, None)
            if row.endswith("prefetch 20"):
                request = replace(request, prefetch=tuple(replace(p, limit=20) for p in request.prefetch))
            t0 = time.perf_counter()
            found = vs.query("bench", request, limit=limit, query_filter=flt)
            took = time.perf_counter() - t0
            empty[row] += not found
            return took

        for i in range(args.queries):  # warm: every query once in each mode (a reopened store reads its pages)
            for row in rows:
                one(i, *row)
        empty = dict.fromkeys(samples, 0)
        last = time.perf_counter()
        for i in range(args.queries):
            for k in range(len(rows)):
                row = rows[(i + k) % len(rows)]
                samples[row[0]].append(one(i, *row))
            if time.perf_counter() - last > 10:
                last = time.perf_counter()
                print(f"  {i + 1}/{args.queries} queries in each mode", flush=True)
    for row in samples:
        out[f"{row}_p50"], out[f"{row}_p99"] = percentiles(samples[row])
        out[f"{row}_empty"] = empty[row]
    out["hybrid_over_dense_p50"] = out["hybrid_p50"] / out["dense_p50"]
    out["load_end"] = os.getloadavg()
    print(
        f"\n## latency: {args.points:,} points, embedded Edge (HNSW on fused; BM25 `lexical` of real item texts), "
        f"{args.queries} real query texts, modes interleaved, after a warm-up pass"
    )
    print("| mode | hits | p50 ms | p99 ms | queries without a hit |\n|---|---|---|---|---|")
    for row, _, limit in rows:
        print(f"| {row} | {limit} | {out[f'{row}_p50']:.2f} | {out[f'{row}_p99']:.2f} | {out[f'{row}_empty']} |")
    print(f"hybrid p50 / dense p50 = {out['hybrid_over_dense_p50']:.2f} (goal: at most 2)")
    how = "reused from an earlier run" if out["reused"] else "this run"
    print(f"store build ({how}): upsert {out['upsert_s']:.0f}s, index {out['index_s']:.0f}s")
    print("load average: start " + ", ".join(f"{v:.1f}" for v in out["load_start"]), end="")
    print("; end " + ", ".join(f"{v:.1f}" for v in out["load_end"]))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


#: What a text-query mode is judged by on the validation items: exact and partial names at recall@1,
#: descriptions (paraphrases) at recall@10.
CRITERIA = (("exact", "recall@1"), ("partial", "recall@1"), ("paraphrase", "recall@10"))


def choose_default(table: Table, catalogs) -> str | None:
    """The text-query mode with the best mean of :data:`CRITERIA` over the catalogs' validation items, among
    those whose paraphrase recall@10 is within 0.01 of dense's on every catalog (None without the data)."""
    labels = {k[4] for k in table.values if k[1] == "val" and k[2] == "exact"}
    keys = {
        (c, label): [(c, "val", kind, "fused", label) for kind, _ in CRITERIA] for c in catalogs for label in labels
    }
    if not labels or any(k not in table.values for ks in keys.values() for k in ks):
        return None
    score, ok = {}, {}
    for label in sorted(labels):
        score[label] = np.mean([table.mean(k, m) for c in catalogs for k, (_, m) in zip(keys[c, label], CRITERIA)])
        ok[label] = all(
            table.mean((c, "val", "paraphrase", "fused", label), "recall@10")
            >= table.mean((c, "val", "paraphrase", "fused", "dense"), "recall@10") - 0.01
            for c in catalogs
        )
        print(
            f"validation: {label}: mean of {[f'{k} {m}' for k, m in CRITERIA]} = {score[label]:.3f}"
            f"{'' if ok[label] else ' (paraphrases lose more than 0.01 recall@10)'}"
        )
    return max((label for label in labels if ok[label]), key=lambda label: score[label], default=None)


def print_tables(table: Table, args) -> None:
    for name in args.catalogs:
        for split in ("val", "test"):
            print(f"\n## {name}, {split} items: recall@1 / recall@10 / MRR, mean ± std over seeds {args.seeds}")
            print("| query kind | target | mode | n | R@1 | R@10 | MRR | R@50 |")
            print("|---|---|---|---|---|---|---|---|")
            for key in table.values:
                if key[:2] != (name, split):
                    continue
                n = np.mean([r["n_queries"] for r in table.values[key]])
                cells = " | ".join(table.cell(key, m) for m in ("recall@1", "recall@10", "mrr", "recall@50"))
                print(f"| {key[2]} | {key[3]} | {key[4]} | {n:.0f} | {cells} |")
    chosen = choose_default(table, args.catalogs)
    if chosen is not None:
        print(f"\nthe default for text queries, chosen on validation: {chosen}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    for name in ("prepare", "transcripts", "run", "latency", "report", "all"):
        p = sub.add_parser(name)
        p.add_argument("--data", default="mmalign-data/search-bench")
        p.add_argument("--features", default="mmalign-data/search-bench/features")
        p.add_argument("--tux-features", default="mmalign-data/features", help="the tuxpaint stamps' feature cache")
        if name in ("prepare", "run", "all"):
            p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
        if name == "report":
            p.add_argument("runs", nargs="+", help="JSON files that run --out wrote")
            p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
        if name in ("run", "report", "all"):
            p.add_argument("--catalogs", nargs="+", default=list(CATALOGS), choices=list(CATALOGS))
            p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
        if name in ("latency", "all"):
            p.add_argument("--points", type=int, default=100_000)
            p.add_argument("--queries", type=int, default=300)
        p.add_argument("--out", default=None, help="write every number as JSON here")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return prepare(args)
    if args.command == "transcripts":
        return prepare_transcripts(args)
    if args.command == "run":
        return run(args)
    if args.command == "latency":
        return latency(args)
    if args.command == "report":
        return report(args)
    if args.command is None:  # everything, with the defaults
        args = parser.parse_args(["all"])
    if not (Path(args.data) / "clips.jsonl").exists():
        prepare(args)
    run(args)
    if args.out:  # run's tables are in --out; the latency figures go beside them
        args.out = str(Path(args.out).with_suffix("")) + "-latency.json"
    return latency(args)


if __name__ == "__main__":
    sys.exit(main())
