"""GPU path check: the same catalog encoded and ingested on CUDA and on the CPU, AMP agreement, latency.

    python -m benchmarks.gpu_check [--quick | --limit N] [--synthetic N] [--devices cpu,cuda]
                                   [--image-weights FILE] [--text-weights DIR] [--json FILE]

1. Catalog: the tuxpaint stamps with a PNG image (Debian package tuxpaint-stamps-default; SVG stamps
   are left out, cairosvg is not everywhere) or, when they are absent or ``--synthetic N`` is given,
   N synthetic 512x512 PNGs (shapes on noisy gradients) with a sentence describing each, written here.
2. Per device (cpu, then cuda when torch sees one), with the offline encoders EfficientNet-Lite0
   (timm) and all-MiniLM-L6-v2 (transformers), loaded once:
   decode (+ letterbox to 224, what the decode threads do) on 4 threads and on all cores;
   encoder-only throughput on already-decoded inputs at the batch sizes ingest uses (and, on CUDA,
   larger ones): the limit of the pipeline; pipelined ``ingest()`` into an embedded Qdrant, per
   stage and end to end; a naive one-item-at-a-time loop on the first ``--naive`` items; query
   latency p50/p99 through ``Searcher.search`` (encode + project + store query).
3. AMP (CUDA only): fp32, bf16 and fp16 autocast features of every item per encoder; cosine to fp32
   per item (min/mean), to the CPU fp32 features, nearest-neighbour agreement, and text->image
   recall@10 on held-out items with a bundle trained on the CPU fp32 features.

Weights come from the pip weight packages by default, or from ``--image-weights`` / ``--text-weights``
(or $MMALIGN_IMAGE_WEIGHTS / $MMALIGN_TEXT_WEIGHTS), e.g. fp16 copies carried to a machine without the
packages: they are loaded as fp32 models. Audio is not measured here (see the note it prints).
Timings hold for the machine they ran on.

On a GPU machine without the weight packages, qdrant-client or pydantic (and no network):
``python -m benchmarks.gpu_check --prepare-device .gpu`` here (fp16 copies of the two weights, about
55 MB, and the wheels; keep .gpu/ out of git), carry .gpu there and run ``DEVICE_COMMAND`` in the
repository root (it puts the repository's folders under an ``mmalign`` namespace in /tmp/ns).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

QUICK_LIMIT = 200
DEFAULT_SYNTHETIC = 2000
INGEST_WORKERS = 4  # extract_features' default decode threads


#: Run in the repository root of a machine that has torch, timm and transformers but not mmalign.
DEVICE_COMMAND = (
    "set -o pipefail; export PYTHONUNBUFFERED=1; "
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
    ".gpu/whl/*.whl || exit 1; "
    'mkdir -p /tmp/ns/mmalign && for d in plugin connectors schemas; do ln -sfn "$PWD/$d" /tmp/ns/mmalign/$d; done; '
    "export PYTHONPATH=/tmp/ns:/tmp/site; "
    "timeout 330 python3 -m benchmarks.gpu_check --synthetic 2000 "
    "--image-weights .gpu/weights/efficientnet-lite0-fp16.pth --text-weights .gpu/weights/minilm "
    "--work /tmp/gc --json $OUT/gpu_check.json 2>&1 | tee $OUT/gpu_check.log; rc=$?; "
    "timeout 60 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_gpu.py 2>&1 | tee $OUT/pytest_gpu.log; "
    "exit $rc"
)
#: Distributions the device image lacks (pure Python but pydantic-core), at the versions installed here.
CARRIED_WHEELS = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
    "qdrant-client",
    "h2",
    "hpack",
    "hyperframe",
)
DEVICE_PYTHON = "3.12"


def prepare_device(folder: Path, echo) -> None:
    """fp16 copies of the offline weights and the missing wheels, to carry to a GPU machine."""
    import shutil
    import subprocess
    from importlib.metadata import version

    import torch
    from safetensors.torch import load_file, save_file

    from mmalign.plugin.encoders.registry import get_encoder_spec
    from mmalign.plugin.encoders.weights import resolve_local

    weights = folder / "weights"
    (weights / "minilm").mkdir(parents=True, exist_ok=True)
    # torch.save keeps the key order, which the by-position mapping of this checkpoint relies on
    # (safetensors would sort the keys).
    state = torch.load(
        str(resolve_local(get_encoder_spec("efficientnet-lite0").weights)), map_location="cpu", weights_only=True
    )
    torch.save(
        type(state)((k, v.half() if v.is_floating_point() else v) for k, v in state.items()),
        str(weights / "efficientnet-lite0-fp16.pth"),
    )
    source = resolve_local(get_encoder_spec("minilm-l6").weights)
    tensors = load_file(str(source / "model.safetensors"))
    save_file(
        {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()},
        str(weights / "minilm" / "model.safetensors"),
        metadata={"format": "pt"},
    )
    for name in ("config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if (source / name).exists():
            shutil.copy(source / name, weights / "minilm" / name)
    platforms = [
        f"--platform={p}"
        for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
    ]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            f"--python-version={DEVICE_PYTHON}",
            "--implementation=cp",
            *platforms,
            "-d",
            str(folder / "whl"),
            *(f"{name}=={version(name)}" for name in CARRIED_WHEELS),
        ],
        check=True,
    )
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
    echo(f"{folder}: {size:.1f} MiB (fp16 weights, loaded as fp32 models there; wheels for Python {DEVICE_PYTHON})")
    echo(f"carry it and run in the repository root:\n{DEVICE_COMMAND}")


# -- catalog ---------------------------------------------------------------------------------------
SHAPES = ("circle", "square", "triangle", "diamond", "ring", "cross")
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 50, 170),
    "orange": (245, 140, 20),
    "black": (20, 20, 20),
    "white": (248, 248, 248),
}
SIZES = {"small": 0.16, "big": 0.36}
PLACES = {
    "on the left": (0.3, 0.5),
    "on the right": (0.7, 0.5),
    "at the top": (0.5, 0.3),
    "at the bottom": (0.5, 0.7),
    "in the middle": (0.5, 0.5),
}
BACKGROUNDS = {
    "grey": (128, 128, 128),
    "pale": (225, 222, 205),
    "dark": (45, 45, 60),
    "sky blue": (150, 190, 235),
    "grass green": (110, 165, 90),
}
SYNTH_SIZE = 512


def _draw_shape(draw, shape: str, cx: float, cy: float, r: float, color) -> None:
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle(box, fill=color)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=color)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=color)
    elif shape == "ring":
        draw.ellipse(box, outline=color, width=max(4, int(r / 3)))
    else:  # cross
        w = r / 3
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=color)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=color)


def synth_item(args: tuple[int, str]) -> dict:
    """Write synthetic image ``index`` (deterministic) and return its catalog item."""
    from PIL import Image, ImageDraw

    index, folder = args
    rng = np.random.default_rng(1000 + index)
    pick = lambda options: list(options)[int(rng.integers(len(options)))]
    shape, color, size, place, bg = pick(SHAPES), pick(COLORS), pick(SIZES), pick(PLACES), pick(BACKGROUNDS)
    n = SYNTH_SIZE
    ramp = np.linspace(0.8, 1.15, n, dtype=np.float32)[:, None, None]
    pixels = np.asarray(BACKGROUNDS[bg], np.float32)[None, None, :] * ramp * np.ones((1, n, 1), np.float32)
    pixels += rng.normal(0, 9, size=(n, n, 3)).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 3))):  # faint distractors
        tone = tuple(int(v) for v in rng.integers(60, 200, size=3))
        _draw_shape(draw, pick(SHAPES), *(rng.uniform(0.1, 0.9, size=2) * n), n * 0.05, tone)
    cx, cy = PLACES[place]
    _draw_shape(
        draw,
        shape,
        (cx + rng.normal(0, 0.03)) * n,
        (cy + rng.normal(0, 0.03)) * n,
        SIZES[size] * n / 2 * rng.uniform(0.85, 1.15),
        COLORS[color],
    )
    name = f"img/{index:05d}.png"
    image.save(Path(folder) / name, compress_level=1)
    return {
        "id": f"synth-{index:05d}",
        "text": f"A {size} {color} {shape} {place} on a {bg} background.",
        "image": name,
        "metadata": {"shape": shape, "color": color},
    }


def build_catalog(work: Path, *, stamps: Path | None, synthetic: int | None, limit: int | None):
    """Write the catalog JSONL; returns (catalog path, media root, items, description)."""
    items: list[dict]
    if synthetic is None and stamps is not None and stamps.is_dir():
        from mmalign.connectors.datasets.tuxpaint import build_items

        items = [i for i in build_items(stamps) if i["image"].endswith(".png") and i.get("text")]
        for item in items:
            item.pop("audio", None)  # image + text only: the audio encoders are not measured here
        items = items[:limit] if limit else items
        root, what = stamps, f"tuxpaint stamps with a PNG image ({stamps})"
    else:
        import multiprocessing

        n = min(synthetic or DEFAULT_SYNTHETIC, limit or 10**9)
        root = work / "synthetic"
        (root / "img").mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        # spawn: the workers must not inherit torch's threads or a CUDA context
        with multiprocessing.get_context("spawn").Pool(min(16, os.cpu_count() or 1)) as pool:
            items = pool.map(synth_item, [(i, str(root)) for i in range(n)], chunksize=16)
        size = sum((root / i["image"]).stat().st_size for i in items) / len(items) / 1024
        what = (
            f"synthetic: {n} {SYNTH_SIZE}x{SYNTH_SIZE} PNGs (shapes on noisy gradients, {size:.0f} KiB each) "
            f"and one sentence each, written in {time.perf_counter() - t0:.1f}s"
        )
    path = work / "catalog.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path, root, items, what


# -- encoders --------------------------------------------------------------------------------------
def encoder_specs(image_weights: str | None, text_weights: str | None):
    from mmalign.plugin.encoders.registry import get_encoder_spec, with_weights
    from mmalign.schemas import Modality

    image = get_encoder_spec("efficientnet-lite0")
    text = get_encoder_spec("minilm-l6")
    if image_weights:
        image = with_weights(image, str(Path(image_weights).resolve()))
    if text_weights:
        text = with_weights(text, str(Path(text_weights).resolve()))
    return {Modality.IMAGE: image, Modality.TEXT: text}


def weights_note(spec) -> str:
    """Which file the weights come from and the dtype they are stored in."""
    from mmalign.plugin.encoders.weights import resolve_local

    path = resolve_local(spec.weights)
    dtype = "?"
    try:
        if path.is_dir():
            from safetensors import safe_open

            with safe_open(str(path / "model.safetensors"), framework="pt") as handle:
                dtypes = {handle.get_slice(k).get_dtype() for k in handle.keys()}
            dtype = "/".join(sorted(dtypes))
        else:
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True)
            dtype = "/".join(sorted({str(v.dtype).removeprefix("torch.") for v in state.values()}))
    except Exception as exc:  # the note is informative only
        dtype = f"unread ({type(exc).__name__})"
    half = any(d in dtype.lower() for d in ("f16", "float16"))
    note = " -- fp16 copy (converted to carry it), loaded as a fp32 model" if half else ""
    return f"{spec.name}: {path} [{dtype}]{note}"


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def timed(fn, device: str):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def decode_all(encoder, paths: list[Path], workers: int):
    """Decode (and letterbox: ``load_input``) every image on ``workers`` threads."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: encoder.load_input(p, p.stem), paths))


# -- measures --------------------------------------------------------------------------------------
def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(axis=1)


def top_k(x: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    scores = x @ x.T
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def neighbour_agreement(ref: np.ndarray, other: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Mean overlap of the k nearest neighbours (within the set) and top-1 agreement."""
    a, b = top_k(ref, k, True), top_k(other, k, True)
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)])
    return float(overlap), float(np.mean(a[:, 0] == b[:, 0]))


def text_to_image(bundle, feats: dict, rows: np.ndarray, k: int = 10) -> tuple[float, np.ndarray]:
    """recall@k of text->image over ``rows`` (one relevant image per text) and the retrieved lists."""
    from mmalign.plugin.align.metrics import ranks_of_targets, retrieval_metrics
    from mmalign.schemas import Modality

    q = bundle.embed(Modality.TEXT, feats[Modality.TEXT][rows])
    c = bundle.embed(Modality.IMAGE, feats[Modality.IMAGE][rows])
    ranks = ranks_of_targets(q, c, np.arange(len(rows)))
    lists = np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :k]
    return retrieval_metrics(ranks)[f"recall@{k}"], lists


def train_bundle(work: Path, specs, ids: list[str], feats: dict, echo):
    """A small bundle (cheap settings: this checks the GPU path, not alignment quality) on CPU features."""
    from mmalign.plugin.align.bundle import load_bundle, save_bundle
    from mmalign.plugin.align.evaluation import shared_space_modalities
    from mmalign.plugin.align.fit import fit_alignment
    from mmalign.plugin.features.paired import PairedFeatures
    from mmalign.schemas import TrainConfig

    cfg = TrainConfig(teacher_epochs=40, epochs=40, patience=8, cca_regs=(0.3,))
    data = PairedFeatures.from_arrays(ids, {m: feats[m] for m in specs})
    t0 = time.perf_counter()
    result = fit_alignment(data, cfg, raw_modalities=shared_space_modalities(specs), echo=lambda s: None)
    models = result.models
    save_bundle(
        work / "bundle",
        specs=specs,
        cfg=cfg,
        student=models["student"],
        teacher=models.get("teacher"),
        baselines={k: models[k] for k in ("svd", "cca")},
        summary={
            "split": result.split,
            "training_summary": result.training_summary,
            "metrics": {"split": "test", "n_items": len(result.test), "results": result.results},
            "preset": "offline-small",
        },
    )
    bundle = load_bundle(work / "bundle", with_teacher=False)
    echo(
        f"bundle {bundle.bundle_id} trained on CPU fp32 features in {time.perf_counter() - t0:.1f}s "
        f"(train {result.split['n_train']}, val {result.split['n_val']}, test {len(result.split['test_ids'])})"
    )
    return bundle, result.split["test_ids"]


def percentiles_ms(samples) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def measure_encoders(device: str, *, specs, decoded, texts, echo) -> dict:
    """Load the encoders on ``device`` and time them alone on already-decoded inputs: the pipeline's limit."""
    import torch

    from mmalign.plugin.encoders import build_encoder
    from mmalign.plugin.encoders.base import DEFAULT_BATCH_SIZE, GPU_BATCH_SIZE
    from mmalign.schemas import Modality

    out: dict = {"device": device}
    cuda = device == "cuda"
    t0 = time.perf_counter()
    encoders = {m: build_encoder(s, device=device) for m, s in specs.items()}
    out["load_s"] = time.perf_counter() - t0
    out["encoders"] = encoders
    image_enc, text_enc = encoders[Modality.IMAGE], encoders[Modality.TEXT]
    out["precision"] = getattr(image_enc, "precision", "fp32")
    echo(
        f"[{device}] encoders loaded in {out['load_s']:.1f}s; precision {out['precision']}"
        + (f"; torch threads {torch.get_num_threads()}" if not cuda else "")
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    n = len(texts)
    # First the batch sizes ingest uses (extract_features takes DEFAULT_BATCH_SIZE), then larger ones on CUDA.
    batches = [(DEFAULT_BATCH_SIZE[Modality.IMAGE], DEFAULT_BATCH_SIZE[Modality.TEXT])]
    if cuda:
        batches += [(GPU_BATCH_SIZE[Modality.IMAGE], GPU_BATCH_SIZE[Modality.TEXT]), (512, 512)]
    for bi, bt in batches[:1]:  # warm-up (cuDNN autotune, lazy init) on a few batches
        image_enc.encode(decoded[: 2 * bi], batch_size=bi)
        text_enc.encode(texts[: 2 * bt], batch_size=bt)
    out["encoder_only"] = []
    for bi, bt in batches:
        fi, ti = timed(lambda bi=bi: image_enc.encode(decoded, batch_size=bi), device)
        ft, tt = timed(lambda bt=bt: text_enc.encode(texts, batch_size=bt), device)
        row = {
            "batch_image": bi,
            "batch_text": bt,
            "image_per_s": n / ti,
            "text_per_s": n / tt,
            "item_per_s": n / (ti + tt),
        }
        out["encoder_only"].append(row)
        echo(
            f"[{device}] encoder-only at batch {bi}/{bt}: image {row['image_per_s']:.0f}/s, text "
            f"{row['text_per_s']:.0f}/s, per item (image+text) {row['item_per_s']:.0f}/s"
        )
        out.setdefault("features", {Modality.IMAGE: fi, Modality.TEXT: ft})
    if cuda:
        out["gpu_peak_encode_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def measure_pipeline(out: dict, *, specs, catalog, items, texts, paths, bundle, work: Path, args, echo) -> dict:
    """Pipelined and naive ingest, then query latency, with the encoders ``measure_encoders`` loaded."""
    import torch

    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.encoders.registry import encoder_id
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.index.search import Searcher
    from mmalign.schemas import StoreConfig

    device, encoders, n = out["device"], out["encoders"], len(items)
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    # Pipelined ingest, empty feature cache and store; the encoders above are reused (loading excluded).
    pool = {encoder_id(s): encoders[m] for m, s in specs.items()}
    tmp = Path(tempfile.mkdtemp(prefix=f"ingest-{device}-", dir=work))
    store = VectorStore(StoreConfig(path=str(tmp / "qdrant")))
    store.list_collections()  # open the embedded engine (and import qdrant_client) outside the timing
    report = ingest(
        catalog,
        bundle=bundle,
        collection="bench",
        store=store,
        features_dir=tmp / "features",
        encoder_pool=pool,
        device=device,
    )
    if report.ok != n:
        echo(f"[{device}] WARNING: ingest ok {report.ok} of {n} (failed {report.failed}); see {report.dead_letter}")
    out["ingest"] = {name: {"items": s.items, "seconds": s.seconds} for name, s in report.stages.items()}
    out["ingest_s"], out["ingest_ok"] = report.seconds, report.ok
    out["e2e_per_s"] = report.ok / report.seconds
    echo(f"[{device}] pipelined ingest: {report.ok} items in {report.seconds:.2f}s = {out['e2e_per_s']:.1f}/s")

    # Naive loop on the first --naive items, into another collection of the same store.
    subset = items[: args.naive]
    store.create_collection("naive", bundle.dim, bundle_id=bundle.bundle_id)
    from benchmarks.ingest import naive_ingest  # the same one-item-at-a-time loop as the CPU benchmark

    naive_s = naive_ingest(subset, catalog, bundle, encoders, store, "naive")
    out["naive_per_s"] = len(subset) / naive_s
    out["naive_items"] = len(subset)
    echo(f"[{device}] naive loop: {len(subset)} items in {naive_s:.2f}s = {out['naive_per_s']:.1f}/s")

    # Query latency through the public search path: encode + project + store query on the ingested items.
    searcher = Searcher("bench", store=store, bundle=bundle, device=device, encoder_pool=pool)
    out["latency"] = {}
    try:
        for what, queries in (("text->image", texts), ("image->text", paths)):
            samples = []
            for j in range(args.queries + 3):
                value = queries[j % len(queries)]
                t0 = time.perf_counter()
                if what == "text->image":
                    hits = searcher.search(text=[value], using="image", k=10)
                else:
                    hits = searcher.search(image=[value], using="text", k=10)
                if j >= 3:  # the first ones warm up
                    samples.append(time.perf_counter() - t0)
                assert len(hits) == 10
            out["latency"][what] = percentiles_ms(samples)
            echo(
                f"[{device}] query {what}: p50 {out['latency'][what][0]:.1f} ms, p99 "
                f"{out['latency'][what][1]:.1f} ms ({args.queries} queries, {n} points)"
            )
    finally:
        searcher.close()
    if cuda:
        out["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    return out


def amp_check(gpu: dict, cpu_feats: dict, decoded_texts, decoded_images, bundle, test_rows, echo) -> list[dict]:
    """fp32 vs bf16 vs fp16 on the GPU, and GPU fp32 vs CPU fp32, per encoder; retrieval on held-out items."""
    from mmalign.plugin.encoders.base import GPU_BATCH_SIZE
    from mmalign.schemas import Modality

    encoders = gpu["encoders"]
    inputs = {Modality.IMAGE: decoded_images, Modality.TEXT: decoded_texts}
    by_precision: dict[str, dict] = {}
    for precision in ("fp32", "bf16", "fp16"):
        by_precision[precision] = {}
        for m, enc in encoders.items():
            default = enc.precision
            enc.precision = precision
            try:
                by_precision[precision][m] = enc.encode(inputs[m], batch_size=GPU_BATCH_SIZE[m])
            finally:
                enc.precision = default
    rows = []
    ref = by_precision["fp32"]
    for m in encoders:
        for name, feats in (
            ("gpu bf16", by_precision["bf16"][m]),
            ("gpu fp16", by_precision["fp16"][m]),
            ("cpu fp32", cpu_feats[m]),
        ):
            cos = cosine_rows(ref[m], feats)
            overlap, top1 = neighbour_agreement(ref[m], feats)
            rows.append(
                {
                    "encoder": encoders[m].spec.name,
                    "vs gpu fp32": name,
                    "cos_min": float(cos.min()),
                    "cos_mean": float(cos.mean()),
                    "items_below_0.99": int((cos < 0.99).sum()),
                    "nn_overlap@10": overlap,
                    "nn_top1": top1,
                }
            )
    retrieval = []
    cpu_recall, cpu_lists = text_to_image(bundle, cpu_feats, test_rows)
    retrieval.append({"features": "cpu fp32", "recall@10": cpu_recall, "overlap@10_vs_cpu": 1.0})
    for precision in ("fp32", "bf16", "fp16"):
        recall, lists = text_to_image(bundle, by_precision[precision], test_rows)
        overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(cpu_lists, lists)]))
        retrieval.append({"features": f"gpu {precision}", "recall@10": recall, "overlap@10_vs_cpu": overlap})
    return rows, retrieval


# -- report ----------------------------------------------------------------------------------------
def stage_rate(result: dict, name: str) -> float | None:
    stage = result["ingest"].get(name)
    if not stage or stage["seconds"] <= 0:
        return None
    return stage["items"] / stage["seconds"]


def print_table(results: dict, decode: dict, n: int, echo) -> None:
    devices = list(results)
    fmt = lambda v: "-" if v is None else (v if isinstance(v, str) else format(v, ".1f" if abs(v) < 10 else ".0f"))
    rows: list[tuple[str, list]] = []
    add = lambda label, values: rows.append((label, values))
    add("items (image + text each)", [str(n)] * len(devices))
    add(f"decode+letterbox, {INGEST_WORKERS} threads (items/s)", [decode[INGEST_WORKERS]] * len(devices))
    add(f"decode+letterbox, {decode['all_workers']} threads", [decode["all"]] * len(devices))
    first = {d: results[d]["encoder_only"][0] for d in devices}
    add(f"encode only, image @{first[devices[0]]['batch_image']}", [first[d]["image_per_s"] for d in devices])
    add(f"encode only, text @{first[devices[0]]['batch_text']}", [first[d]["text_per_s"] for d in devices])
    add("encode only, per item = the limit", [first[d]["item_per_s"] for d in devices])
    best = {d: max(results[d]["encoder_only"], key=lambda r: r["item_per_s"]) for d in devices}
    add(
        "encode only, per item, best batch",
        [f"{best[d]['item_per_s']:.0f} @{best[d]['batch_image']}/{best[d]['batch_text']}" for d in devices],
    )
    add("ingest: encode stage (decode+encode+cache)", [stage_rate(results[d], "encode") for d in devices])
    add("ingest: project stage", [stage_rate(results[d], "project") for d in devices])
    add("ingest: upsert stage", [stage_rate(results[d], "upsert") for d in devices])
    add("ingest: skip-check stage (hash + lookup)", [stage_rate(results[d], "skip_check") for d in devices])
    add("end to end, pipelined (items/s)", [results[d]["e2e_per_s"] for d in devices])
    add(
        "end to end / encoder-only (goal >= 90%)",
        [f"{100 * results[d]['e2e_per_s'] / first[d]['item_per_s']:.0f}%" for d in devices],
    )
    add("naive loop (items/s)", [results[d]["naive_per_s"] for d in devices])
    add("pipelined / naive", [f"{results[d]['e2e_per_s'] / results[d]['naive_per_s']:.1f}x" for d in devices])
    add("batch size in ingest (image/text)", [f"{first[d]['batch_image']}/{first[d]['batch_text']}" for d in devices])
    add("precision", [results[d]["precision"] for d in devices])
    add("GPU memory peak MiB, encoder-only sweep", [results[d].get("gpu_peak_encode_mib") for d in devices])
    add("GPU memory peak MiB, ingest + queries", [results[d].get("gpu_peak_mib") for d in devices])
    for what in ("text->image", "image->text"):
        add(
            f"query {what} p50 / p99 ms",
            [f"{results[d]['latency'][what][0]:.1f} / {results[d]['latency'][what][1]:.1f}" for d in devices],
        )
    add("encoder load (s, excluded)", [f"{results[d]['load_s']:.1f}" for d in devices])
    width = max(len(label) for label, _ in rows) + 2
    echo("")
    echo(f"{'':<{width}}" + "".join(f"{d:>16}" for d in devices))
    for label, values in rows:
        echo(f"{label:<{width}}" + "".join(f"{fmt(v):>16}" for v in values))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, help="use the first N items of the catalog")
    parser.add_argument("--quick", action="store_true", help=f"--limit {QUICK_LIMIT}, fewer naive items and queries")
    parser.add_argument("--synthetic", type=int, help="N synthetic items even where the tuxpaint stamps are installed")
    parser.add_argument("--stamps", default="/usr/share/tuxpaint/stamps", help="tuxpaint stamps folder")
    parser.add_argument("--devices", default="cpu,cuda", help="cuda is skipped (with a note) where torch sees none")
    parser.add_argument("--image-weights", default=os.environ.get("MMALIGN_IMAGE_WEIGHTS"))
    parser.add_argument("--text-weights", default=os.environ.get("MMALIGN_TEXT_WEIGHTS"))
    parser.add_argument("--naive", type=int, default=200, help="items in the naive loop")
    parser.add_argument("--queries", type=int, default=100, help="queries per modality for latency")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument(
        "--prepare-device",
        metavar="DIR",
        help="write fp16 weights and the missing wheels to DIR for a GPU machine, then stop",
    )
    args = parser.parse_args(argv)
    if args.prepare_device:
        prepare_device(Path(args.prepare_device), lambda line="": print(line, flush=True))
        return 0
    if args.quick:
        args.limit = args.limit or QUICK_LIMIT
        args.naive = min(args.naive, 30)
        args.queries = min(args.queries, 20)

    import torch

    from mmalign.connectors.sources import open_catalog
    from mmalign.schemas import Modality

    echo = lambda line="": print(line, flush=True)
    started = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    catalog_path, root, item_dicts, what = build_catalog(  # first: its worker processes start before CUDA does
        work, stamps=Path(args.stamps) if args.stamps else None, synthetic=args.synthetic, limit=args.limit
    )
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    if "cuda" in devices and not torch.cuda.is_available():
        echo("cuda: torch sees no CUDA device here: the CPU column only (run this on a CUDA machine for the GPU one)")
        devices.remove("cuda")
    gpu_name = torch.cuda.get_device_name(0) if "cuda" in devices else None
    echo(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} CPUs"
        + (
            f", GPU {gpu_name} (capability {'.'.join(map(str, torch.cuda.get_device_capability(0)))})"
            if gpu_name
            else ""
        )
    )
    catalog = open_catalog(catalog_path, media_root=root)
    items = catalog.items()
    texts = [i.text for i in items]
    paths = [catalog.resolve(i, Modality.IMAGE) for i in items]
    ids = [i.id for i in items]
    echo(f"catalog: {len(items)} items, {what}")

    specs = encoder_specs(args.image_weights, args.text_weights)
    for spec in specs.values():
        echo(f"weights {weights_note(spec)}")

    # Decode throughput (CPU work, the same whatever the encoder's device).
    from mmalign.plugin.encoders import build_encoder

    probe = build_encoder(specs[Modality.IMAGE], device="cpu")
    decode = {"all_workers": os.cpu_count() or 1}
    for workers in (INGEST_WORKERS, decode["all_workers"]):
        decoded_images, seconds = timed(lambda w=workers: decode_all(probe, paths, w), "cpu")
        decode[workers] = len(paths) / seconds
    decode["all"] = decode[decode["all_workers"]]
    echo(
        f"decode + letterbox to 224: {decode[INGEST_WORKERS]:.0f} items/s on {INGEST_WORKERS} threads, "
        f"{decode['all']:.0f} on {decode['all_workers']}"
    )

    # Encoders alone on every device; the CPU fp32 features train the bundle that ingest and retrieval use.
    from mmalign.plugin.encoders.registry import encoder_id

    results: dict[str, dict] = {}
    for device in devices:
        results[device] = measure_encoders(device, specs=specs, decoded=decoded_images, texts=texts, echo=echo)
    if "cpu" in results:
        cpu_feats = results["cpu"]["features"]
    else:
        cpu_encoders = {m: build_encoder(s, device="cpu") for m, s in specs.items()}
        cpu_feats = {
            Modality.IMAGE: cpu_encoders[Modality.IMAGE].encode(decoded_images),
            Modality.TEXT: cpu_encoders[Modality.TEXT].encode(texts),
        }
        del cpu_encoders
    bundle, test_ids = train_bundle(work, specs, ids, cpu_feats, echo)
    assert {encoder_id(s) for s in specs.values()} == {bundle.config.encoders[m.value].encoder_id for m in specs}
    position = {item_id: n for n, item_id in enumerate(ids)}
    test_rows = np.array([position[i] for i in test_ids])
    recall, _ = text_to_image(bundle, cpu_feats, test_rows)
    echo(f"text->image recall@10 on {len(test_rows)} held-out items, CPU fp32 features: {recall:.3f}")
    for device in devices:
        measure_pipeline(
            results[device],
            specs=specs,
            catalog=catalog,
            items=items,
            texts=texts,
            paths=paths,
            bundle=bundle,
            work=work,
            args=args,
            echo=echo,
        )
    print_table(results, decode, len(items), echo)

    amp_rows, retrieval = [], []
    if "cuda" in results:
        amp_rows, retrieval = amp_check(results["cuda"], cpu_feats, texts, decoded_images, bundle, test_rows, echo)
        echo("\nAMP agreement, features of all items, per encoder (reference: GPU fp32)")
        echo(f"{'encoder':<20}{'features':<11}{'cos min':>10}{'cos mean':>10}{'<0.99':>7}{'nn@10':>8}{'nn top1':>9}")
        for r in amp_rows:
            echo(
                f"{r['encoder']:<20}{r['vs gpu fp32']:<11}{r['cos_min']:>10.5f}{r['cos_mean']:>10.5f}"
                f"{r['items_below_0.99']:>7}{r['nn_overlap@10']:>8.3f}{r['nn_top1']:>9.3f}"
            )
        echo(f"\ntext->image on {len(test_rows)} held-out items, bundle trained on CPU fp32 features")
        echo(f"{'features':<12}{'recall@10':>10}{'top-10 overlap with cpu fp32':>31}")
        for r in retrieval:
            echo(f"{r['features']:<12}{r['recall@10']:>10.3f}{r['overlap@10_vs_cpu']:>31.3f}")
        bad = [r for r in amp_rows if r["cos_min"] < 0.99]
        echo(
            "AMP check: "
            + (
                "PASS (every item cos >= 0.99 for every encoder and precision)"
                if not bad
                else f"FAIL: {[(r['encoder'], r['vs gpu fp32'], round(r['cos_min'], 4)) for r in bad]}"
            )
        )
    else:
        echo("\nAMP agreement: not measured (no CUDA device).")
    echo(
        "audio: not measured on the GPU: whisper-tiny-en needs ctranslate2 and its weights package, too big to "
        "carry to the device machine; logmel-stats (librosa) runs on the CPU only."
    )
    echo(f"total {time.perf_counter() - started:.0f}s")

    if args.json:
        dump = {
            "catalog": what,
            "items": len(items),
            "decode_items_per_s": {str(k): v for k, v in decode.items()},
            "devices": {
                d: {k: v for k, v in r.items() if k not in ("encoders", "features")} for d, r in results.items()
            },
            "amp": amp_rows,
            "retrieval": retrieval,
            "gpu": gpu_name,
        }
        Path(args.json).write_text(json.dumps(dump, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
