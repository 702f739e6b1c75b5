"""Image and text encoders on ONNX Runtime, exported at first use from the weights the torch path loads.

A spec with ``runtime: onnx`` (see :mod:`.runtime`) is built here. The first time, its torch twin (the same
spec on torch) is loaded as usual, wrapped with its input scaling and pooling, and exported to ONNX
(``torch.onnx.export``, TorchScript exporter, dynamic batch and sequence axes); nothing is downloaded. For
``precision: int8`` the export is quantized dynamically (int8 weights per output channel, activations
quantized per batch); the MatMul/Gemm/Conv nodes whose inputs have the largest outliers (max |x| / std over
the probes) are kept fp32, the fewest that bring the probes' agreement to ``INT8_PROBE_TARGET``.

Before an export is used, its features are compared with the torch twin's on probe inputs (synthetic
images, sentences of several lengths): the per-item cosine must be at least ``AGREEMENT_MIN`` (0.99) for
every probe, or the export is refused with the figure (:class:`ExportError`). The figures are kept in the
export's ``meta.json`` and on the encoder (``agreement``).

Exports are cached in ``<export dir>/<name>@<runtime>-<precision>--<hash>/exporter-v<N>/`` (``model.onnx``,
``meta.json``, ``tokenizer.json`` for text), written to a temporary folder and renamed, so processes sharing
the folder never read a half-written export. The export dir is the feature cache's ``onnx/`` folder where
the caller has one (features, ingest), else ``$MMALIGN_ONNX_DIR``, else ``mmalign-data/features/onnx``
(the CLI's default feature folder). Loading a cached export needs onnxruntime only, not torch.

Threads: ``$MMALIGN_ONNX_THREADS`` intra-op threads (default: the CPUs this process may use, at most 8),
one inter-op thread, and no spin-waiting between runs (``$MMALIGN_ONNX_SPIN=1`` turns it on): on a small
box shared with a service's event loop and the vector store, a spinning idle thread steals their CPU.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.connectors.errors import ConfigError, MmalignError
from mmalign.plugin.encoders.base import Encoder
from mmalign.plugin.encoders.registry import encoder_id
from mmalign.plugin.encoders.runtime import AGREEMENT_MIN, torch_twin
from mmalign.plugin.encoders.timm_image import LetterboxInput
from mmalign.schemas import Modality
from mmalign.schemas.encoders import EncoderSpec

log = logging.getLogger(__name__)

#: Changes whenever the exported graph or the quantization recipe changes: a new version exports again.
EXPORTER_VERSION = 1
OPSET = 17
EXPORT_DIR_ENV = "MMALIGN_ONNX_DIR"
DEFAULT_EXPORT_DIR = Path("mmalign-data") / "features" / "onnx"
THREADS_ENV = "MMALIGN_ONNX_THREADS"
SPIN_ENV = "MMALIGN_ONNX_SPIN"
#: int8: nodes are kept fp32 (largest input outliers first) until the probes' minimum cosine reaches this;
#: a margin over AGREEMENT_MIN, because a catalog is not the probe set.
INT8_PROBE_TARGET = 0.995
_INT8_OPS = ("MatMul", "Gemm", "Conv")
INSTALL_HINT = "pip install 'mmalign[onnx]'"


class ExportError(MmalignError):
    """An ONNX export that cannot be made, or whose features do not agree with torch's."""


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(f"runtime 'onnx' needs onnxruntime and onnx: {INSTALL_HINT}") from exc
    return onnxruntime


def export_dir(features_dir: str | Path | None = None) -> Path:
    """Where exports are cached: ``<features_dir>/onnx``, else ``$MMALIGN_ONNX_DIR``, else the CLI default."""
    if features_dir is not None:
        return Path(features_dir) / "onnx"
    return Path(os.environ.get(EXPORT_DIR_ENV) or DEFAULT_EXPORT_DIR)


def _root(root: str | Path | None) -> Path:
    return export_dir() if root is None else Path(root)


def intra_op_threads() -> int:
    value = os.environ.get(THREADS_ENV)
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
        return int(value)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def session_options():
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads()
    options.inter_op_num_threads = 1
    spin = "1" if os.environ.get(SPIN_ENV) == "1" else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.log_severity_level = 3
    return options


def _providers(device: str) -> list[str]:
    ort = require_onnxruntime()
    base = str(device).split(":")[0]
    if base in ("auto", "cpu"):
        return ["CPUExecutionProvider"]
    if base == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(
                "device 'cuda' with runtime 'onnx' needs onnxruntime's CUDA provider (pip install onnxruntime-gpu); "
                "on a GPU the torch runtime is the default (runtime='torch'; CLI: --runtime torch)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ConfigError(
        f"runtime 'onnx' runs on cpu or cuda, not on device {device!r}; use runtime='torch' (CLI: --runtime torch)"
    )


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine between two (n, d) arrays (a zero row against a zero row counts as 1)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-30)
    return np.where(both_zero, 1.0, cos)


# -- the encoders ----------------------------------------------------------------------------------------
class OnnxEncoder(Encoder):
    """An encoder whose graph runs on ONNX Runtime; built by :func:`~mmalign.plugin.encoders.build_encoder`
    for specs with ``runtime: onnx``. ``agreement`` holds the probe figures measured at export."""

    def __init__(
        self,
        spec: EncoderSpec,
        device: str = "auto",
        export_root: str | Path | None = None,
        require_agreement: bool = True,
    ):
        super().__init__(spec, device)
        if getattr(spec, "runtime", None) != "onnx":
            raise ConfigError(f"encoder {spec.name!r} runs on {getattr(spec, 'runtime', 'torch')!r}, not onnx")
        self.providers = _providers(device)
        self.device = "cuda" if self.providers[0].startswith("CUDA") else "cpu"
        self.folder = ensure_export(spec, export_root, require_agreement=require_agreement)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self._open(self.folder)

    @property
    def agreement(self) -> dict:
        """``{"probes", "min_cosine", "mean_cosine", "against"}``: this export against its torch twin."""
        return dict(self.meta["agreement"])

    def _open(self, folder: Path, model_file: str = "model.onnx") -> None:
        ort = require_onnxruntime()
        self.session = ort.InferenceSession(str(folder / model_file), session_options(), providers=self.providers)
        self._output = self.session.get_outputs()[0].name

    def _encode_batch(self, batch: list[Any]) -> np.ndarray:
        return self.session.run([self._output], self._feed(batch))[0]

    def _feed(self, batch: list[Any]) -> dict[str, np.ndarray]:  # pragma: no cover - overridden
        raise NotImplementedError


class OnnxImageEncoder(LetterboxInput, OnnxEncoder):
    """A timm image encoder on ONNX Runtime: uint8 pixels in, the same pooled feature out."""

    def _feed(self, batch):
        return {"pixels": np.stack([np.asarray(self.prepare(img), dtype=np.uint8) for img in batch])}


class OnnxTextEncoder(OnnxEncoder):
    """A transformers text encoder on ONNX Runtime, with the model's own fast tokenizer (``tokenizers``)."""

    def _open(self, folder: Path, model_file: str = "model.onnx") -> None:
        from tokenizers import Tokenizer

        super()._open(folder, model_file)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        padding = self.meta["tokenizer"]
        tokenizer.enable_truncation(max_length=self.spec.max_length)
        tokenizer.enable_padding(pad_id=int(padding["pad_id"]), pad_token=str(padding["pad_token"]))
        self.tokenizer = tokenizer

    def _feed(self, batch):
        for i, text in enumerate(batch):
            if not isinstance(text, str):
                raise TypeError(f"text input {i} is {type(text).__name__}, not str")
        encodings = self.tokenizer.encode_batch(list(batch))
        return {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
        }


def encoder_class(spec: EncoderSpec) -> type[OnnxEncoder]:
    if spec.modality is Modality.IMAGE:
        return OnnxImageEncoder
    if spec.modality is Modality.TEXT:
        return OnnxTextEncoder
    raise ConfigError(
        f"encoder {spec.name!r} ({spec.kind}) has no ONNX Runtime path; use runtime='torch' (CLI: --runtime torch)"
    )


# -- export ----------------------------------------------------------------------------------------------
def ensure_export(spec: EncoderSpec, root: str | Path | None = None, *, require_agreement: bool = True) -> Path:
    """The folder of ``spec``'s export, made now if it is not cached. With ``require_agreement`` (always, but
    for benchmarks that report a precision that does not hold), an export whose probes disagree is refused."""
    folder = _root(root) / _folder_name(spec) / f"exporter-v{EXPORTER_VERSION}"
    meta_file = folder / "meta.json"
    weights = weights_fingerprint(spec)
    if not meta_file.exists() or json.loads(meta_file.read_text()).get("weights") != weights:
        _export(spec, folder, weights)  # new, or the weights at the spec's path changed since
    meta = json.loads(meta_file.read_text())
    agreement = meta["agreement"]
    if require_agreement and agreement["min_cosine"] < AGREEMENT_MIN:
        raise ExportError(
            f"encoder {encoder_id(spec)}: its {spec.runtime} {spec.precision} features do not agree with torch's "
            f"(per-item cosine min {agreement['min_cosine']:.4f}, mean {agreement['mean_cosine']:.4f} over "
            f"{agreement['probes']} probes; needed >= {AGREEMENT_MIN}); use precision fp32 or runtime='torch' "
            f"(CLI: --runtime torch)"
        )
    return folder


def weights_fingerprint(spec: EncoderSpec) -> str | None:
    """Size and time of the files the spec's weights name (None: no local weights): an export made from other
    weights at the same path is made again."""
    import hashlib

    from mmalign.plugin.encoders.weights import resolve_local

    path = resolve_local(spec.weights)
    if path is None:
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _folder_name(spec: EncoderSpec) -> str:
    name, digest = encoder_id(spec).split(":")
    return f"{name}--{digest}"


def _export(spec: EncoderSpec, folder: Path, weights: str | None) -> None:
    require_onnxruntime()
    from mmalign.plugin.encoders.factory import build_kind

    started = time.perf_counter()
    log.info("exporting %s to ONNX (first use) into %s", encoder_id(spec), folder)
    twin = torch_twin(spec)
    reference_encoder = build_kind(twin, device="cpu")
    work = folder.parent / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
    work.mkdir(parents=True)
    try:
        kind = _KIND_EXPORTS[spec.modality]
        meta: dict[str, Any] = {
            "exporter_version": EXPORTER_VERSION,
            "encoder_id": encoder_id(spec),
            "torch_encoder_id": encoder_id(twin),
            "precision": spec.precision,
            "opset": OPSET,
            "weights": weights,
        }
        meta.update(kind.export(reference_encoder, work / "fp32.onnx"))
        probes = kind.probes(spec)
        reference = reference_encoder.encode(probes, batch_size=16)
        (work / "meta.json").write_text(json.dumps({**meta, "agreement": {}}))
        encoder = _bare_encoder(spec, work, "fp32.onnx")
        if spec.precision == "int8":
            meta["int8"] = _quantize(encoder, work, probes, reference)
            model_file = "int8.onnx"
        else:
            model_file = "fp32.onnx"
        encoder._open(work, model_file)
        cos = cosine_rows(encoder.encode(probes, batch_size=16), reference)
        meta["agreement"] = {
            "probes": len(probes),
            "min_cosine": float(cos.min()),
            "mean_cosine": float(cos.mean()),
            "against": encoder_id(twin),
        }
        os.replace(work / model_file, work / "model.onnx")
        for leftover in work.glob("*.onnx"):
            if leftover.name != "model.onnx":
                leftover.unlink()
        meta["versions"] = _versions()
        meta["export_seconds"] = round(time.perf_counter() - started, 2)
        (work / "meta.json").write_text(json.dumps(meta, indent=2))
        stale = folder.parent / f".stale-{os.getpid()}-{secrets.token_hex(4)}"
        if (folder / "meta.json").exists() and json.loads((folder / "meta.json").read_text()).get("weights") != weights:
            os.replace(folder, stale)  # made from weights that are not at that path any more
        try:
            os.replace(work, folder)
        except OSError:  # another process exported it meanwhile: theirs is as good
            if not (folder / "meta.json").exists():
                raise
        shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info(
        "exported %s in %.1f s: probe cosine min %.4f, mean %.4f",
        encoder_id(spec),
        meta["export_seconds"],
        meta["agreement"]["min_cosine"],
        meta["agreement"]["mean_cosine"],
    )


def _bare_encoder(spec: EncoderSpec, folder: Path, model_file: str) -> OnnxEncoder:
    """An encoder on a model file of an export in progress (the export's checks run through ``encode``)."""
    encoder = encoder_class(spec).__new__(encoder_class(spec))
    Encoder.__init__(encoder, spec, "cpu")
    encoder.providers = ["CPUExecutionProvider"]
    encoder.device = "cpu"
    encoder.folder = folder
    encoder.meta = json.loads((folder / "meta.json").read_text())
    encoder._open(folder, model_file)
    return encoder


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _torch_export(module, args: tuple, path: Path, input_names, dynamic_axes) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings are about control flow
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            dynamo=False,
            input_names=list(input_names),
            output_names=["features"],
            dynamic_axes={**dynamic_axes, "features": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )


class _ImageExport:
    @staticmethod
    def export(encoder, path: Path) -> dict:
        import torch

        spec = encoder.spec

        class Graph(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = encoder.model
                self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
                self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1))

            def forward(self, pixels):  # uint8 (n, h, w, 3), as the torch path sends it to the device
                x = pixels.permute(0, 3, 1, 2).float().div(255.0)
                return self.model((x - self.mean) / self.std)

        size = spec.image_size
        sample = torch.zeros((2, size, size, 3), dtype=torch.uint8)
        _torch_export(Graph(), (sample,), path, ["pixels"], {"pixels": {0: "batch"}})
        return {}

    @staticmethod
    def probes(spec) -> list:
        return probe_images(spec.image_size)


class _TextExport:
    @staticmethod
    def export(encoder, path: Path) -> dict:
        import torch

        spec = encoder.spec

        class Graph(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = encoder.model

            def forward(self, input_ids, attention_mask):
                hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                if spec.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if spec.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                return pooled

        tokens = encoder.tokenizer(["a short text", "and another one"], padding=True, return_tensors="pt")
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
        _torch_export(
            Graph(), (tokens["input_ids"], tokens["attention_mask"]), path, ["input_ids", "attention_mask"], axes
        )
        tokenizer = encoder.tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
        if backend is None:
            raise ExportError(f"encoder {spec.name!r}: its tokenizer has no fast (tokenizers) form to export")
        backend.no_truncation()
        backend.no_padding()
        backend.save(str(path.parent / "tokenizer.json"))
        if tokenizer.pad_token_id is None:
            raise ExportError(f"encoder {spec.name!r}: its tokenizer has no padding token")
        return {"tokenizer": {"pad_id": int(tokenizer.pad_token_id), "pad_token": str(tokenizer.pad_token)}}

    @staticmethod
    def probes(spec) -> list:
        return probe_texts()


_KIND_EXPORTS = {Modality.IMAGE: _ImageExport, Modality.TEXT: _TextExport}


# -- int8 ------------------------------------------------------------------------------------------------
def _quantize(encoder: OnnxEncoder, work: Path, probes: list, reference: np.ndarray) -> dict:
    """Dynamic int8 with the fewest outlier-prone nodes kept fp32 that reach ``INT8_PROBE_TARGET`` on the probes;
    when none does (up to half the nodes kept), every node is quantized and the agreement check reports it."""
    import onnx

    source = work / "fp32.onnx"
    candidates = _weighted_nodes(onnx.load(str(source)))
    ratios = _outlier_ratios(encoder, source, candidates, probes)
    order = sorted(candidates, key=lambda name: -ratios[name])
    tries = [0] + [k for k in (1, 2, 4, 6, 8, 12, 16, 24, 32) if k <= len(order) // 2]
    best: tuple[float, int] | None = None
    for kept in tries:
        low = _try_int8(encoder, work, f"int8-{kept}.onnx", probes, reference, exclude=order[:kept]).min()
        log.info("int8 %s, %d of %d nodes kept fp32: probe cosine min %.4f", encoder.spec.name, kept, len(order), low)
        if best is None or low > best[0]:
            best = (float(low), kept)
        if low >= INT8_PROBE_TARGET:
            break
    low, kept = best if best[0] >= INT8_PROBE_TARGET else (best[0], 0)
    os.replace(work / f"int8-{kept}.onnx", work / "int8.onnx")
    for attempt in work.glob("int8-*.onnx"):
        attempt.unlink()
    return {
        "quantized_nodes": len(order) - kept,
        "kept_fp32": order[:kept],
        "probe_target": INT8_PROBE_TARGET,
        "reached": low >= INT8_PROBE_TARGET,
    }


def _try_int8(encoder, work: Path, name: str, probes, reference, *, exclude=()) -> np.ndarray:
    """Quantize fp32.onnx (every candidate node but ``exclude``) into ``name``, open it, and return the probes'
    per-item cosine against ``reference``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(work / "fp32.onnx"),
        str(work / name),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=list(_INT8_OPS),
        nodes_to_exclude=list(exclude),
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    encoder._open(work, name)
    return cosine_rows(encoder.encode(probes, batch_size=16), reference)


def _weighted_nodes(model) -> list[str]:
    """Names of the nodes int8 can quantize: MatMul/Gemm/Conv with a constant weight."""
    constants = {init.name for init in model.graph.initializer}
    constants |= {node.output[0] for node in model.graph.node if node.op_type == "Constant"}
    names = []
    for node in model.graph.node:
        if node.op_type in _INT8_OPS and len(node.input) > 1 and node.input[1] in constants:
            names.append(node.name)
    return names


def _outlier_ratios(encoder: OnnxEncoder, source: Path, nodes: list[str], probes: list) -> dict[str, float]:
    """max |x| / std of each node's activation input over the probes (large: per-batch int8 loses it)."""
    import onnx

    ort = require_onnxruntime()
    model = onnx.load(str(source))
    inputs = {node.name: node.input[0] for node in model.graph.node if node.name in nodes}
    known = {out.name for out in model.graph.output}
    for tensor in sorted(set(inputs.values()) - known):
        model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    names = sorted(set(inputs.values()))
    peak = dict.fromkeys(names, 0.0)
    total = dict.fromkeys(names, 0.0)
    squares = dict.fromkeys(names, 0.0)
    count = dict.fromkeys(names, 0)
    for start in range(0, len(probes), 4):
        outputs = session.run(names, encoder._feed(probes[start : start + 4]))
        for name, value in zip(names, outputs):
            value = np.asarray(value, dtype=np.float64)
            peak[name] = max(peak[name], float(np.abs(value).max(initial=0.0)))
            total[name] += float(value.sum())
            squares[name] += float((value * value).sum())
            count[name] += value.size
    ratios = {}
    for node, tensor in inputs.items():
        n = max(count[tensor], 1)
        std = max((squares[tensor] / n - (total[tensor] / n) ** 2), 0.0) ** 0.5
        ratios[node] = peak[tensor] / max(std, 1e-12)
    return ratios


# -- probe inputs ----------------------------------------------------------------------------------------
_NOUNS = (
    "frog", "car", "house", "tree", "guitar", "rocket", "teapot", "bicycle", "keyboard", "river", "castle",
    "penguin", "umbrella", "printer", "volcano", "lighthouse", "calendar", "folder", "battery", "camera",
)  # fmt: skip
_ADJECTIVES = ("red", "small", "old", "shiny", "green", "broken", "wooden", "happy", "dark", "striped")
_TEMPLATES = (
    "{a} {n}",
    "a {a} {n}",
    "A {a} {n} next to a {n2}.",
    "{n}, application icon; also {n2} ({a})",
    "The {n} is {a}, and the {n2} behind it is not.",
    "Photo of a {a} {n} on a table, with a {n2} in the background and soft light from the left.",
)


def probe_texts(count: int = 48) -> list[str]:
    """Sentences of several shapes and lengths (a few past 256 tokens, so truncation is checked too)."""
    import random

    rng = random.Random(0)
    texts = []
    for i in range(count - 3):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        texts.append(template.format(a=rng.choice(_ADJECTIVES), n=rng.choice(_NOUNS), n2=rng.choice(_NOUNS)))
    long = " ".join(_TEMPLATES[-1].format(a=a, n=n, n2=_NOUNS[-1]) for a, n in zip(_ADJECTIVES * 4, _NOUNS * 2))
    return [*texts, long, long.upper(), "x"]


def probe_images(size: int, count: int = 24) -> list:
    """Icon-like pictures drawn here: shapes and outlines on white, gradients, a photo-like noise texture."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        kind = i % 4
        if kind == 3:  # smooth noise: a photo-like texture
            small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            images.append(Image.fromarray(small).resize((size, size), Image.BILINEAR))
            continue
        image = Image.new("RGB", (size, size), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        if kind == 2:  # a gradient band
            ramp = np.linspace(0, 255, size, dtype=np.uint8)
            colour = rng.integers(0, 256, 3)
            band = np.stack([ramp * (c / 255.0) for c in colour], axis=-1).astype(np.uint8)
            image = Image.fromarray(np.broadcast_to(band, (size, size, 3)).copy())
            draw = ImageDraw.Draw(image)
        for _ in range(1 + i % 3):
            box = sorted(rng.integers(0, size, 2).tolist())
            box2 = sorted(rng.integers(0, size, 2).tolist())
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = (draw.ellipse, draw.rectangle)[int(rng.integers(0, 2))]
            shape((box[0], box2[0], box[1] + 1, box2[1] + 1), fill=fill, outline=(0, 0, 0), width=3)
        images.append(image)
    return images


def agreement_table(
    torch_features: np.ndarray, other_features: np.ndarray, ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """Per-item cosine between two encoders' features of the same inputs: min, mean, and the worst item."""
    cos = cosine_rows(torch_features, other_features)
    worst = int(np.argmin(cos)) if len(cos) else None
    return {
        "items": int(len(cos)),
        "min_cosine": float(cos.min()) if len(cos) else None,
        "mean_cosine": float(cos.mean()) if len(cos) else None,
        "worst": None if worst is None or ids is None else ids[worst],
    }
