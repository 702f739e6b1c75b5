"""Alignment bundles on disk: ``config.json`` + safetensors, never pickle.

config.json records the schema version, the encoder of each modality (name, id, dim, spec),
D, ranks, fusion, the training config and summary, held-out metrics, the split, the sha256 of
every weight file, and ``bundle_id``: a hash of all of that. Loading recomputes both, so a swapped
or truncated weight file, or an edited config, is refused by name before anything is written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.connectors.errors import BundleError
from mmalign.plugin.encoders.registry import encoder_id
from mmalign.schemas import Modality, TrainConfig
from mmalign.schemas.encoders import ENCODER_SPEC_ADAPTER, EncoderSpec
from mmalign.schemas.training import BundleConfig

BUNDLE_KIND = "mmalign-bundle"
BUNDLE_SCHEMA_VERSION = 2
#: Version 1 bundles have no per-file digests; their id is still verified (over all files at once).
READABLE_SCHEMA_VERSIONS = (1, 2)
WEIGHT_FILES = ("student.safetensors", "teacher.safetensors", "baselines.safetensors")


@dataclass
class Bundle:
    path: Path
    config: BundleConfig
    student: Any
    teacher: Any | None
    baselines: dict[str, Any]

    @property
    def bundle_id(self) -> str:
        return self.config.bundle_id

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def modalities(self) -> list[Modality]:
        return [Modality(m) for m in self.config.encoders]

    def encoder_spec(self, modality: Modality) -> EncoderSpec:
        return ENCODER_SPEC_ADAPTER.validate_python(self.config.encoders[Modality(modality).value].spec)

    def check_encoders(self, specs: dict[Modality, EncoderSpec]) -> None:
        """Refuse encoders other than those the bundle was trained on, naming both. The same encoder on another
        runtime (torch / ONNX Runtime, fp32 / int8) is accepted: its features agree (plugin/encoders/runtime.py)."""
        from mmalign.plugin.encoders.runtime import interchangeable

        for modality, spec in specs.items():
            recorded = self.config.encoders.get(modality.value)
            if recorded is None:
                raise BundleError(
                    f"bundle {self.bundle_id} has no {modality.value} projection; it was trained on "
                    f"{sorted(self.config.encoders)}"
                )
            if recorded.encoder_id != encoder_id(spec) and not interchangeable(self.encoder_spec(modality), spec):
                raise BundleError(
                    f"bundle {self.bundle_id} was trained on {modality.value} encoder {recorded.encoder_id}, "
                    f"not {encoder_id(spec)}; use the same encoder (preset/weights) or train a new bundle"
                )

    def embed(self, modality: Modality, features: np.ndarray) -> np.ndarray:
        """Student projection of raw features of one modality -> unit vectors (n, D)."""
        import torch

        self.student.eval()
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            return self.student.embed(Modality(modality), x).numpy()


def _encoders_section(specs: dict[Modality, EncoderSpec]) -> dict[str, Any]:
    return {
        m.value: {"name": s.name, "encoder_id": encoder_id(s), "dim": s.dim, "spec": s.model_dump(mode="json")}
        for m, s in specs.items()
    }


def _state_to_numpy(module, prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def save_bundle(
    path: str | Path,
    *,
    specs: dict[Modality, EncoderSpec],
    cfg: TrainConfig,
    student,
    teacher,
    baselines: dict[str, Any],
    summary: dict[str, Any],
) -> str:
    """Write the bundle; returns its ``bundle_id``."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {
        "student.safetensors": _state_to_numpy(student),
        "teacher.safetensors": _state_to_numpy(teacher) if teacher is not None else {},
        "baselines.safetensors": {
            k: v for name, model in baselines.items() for k, v in _state_to_numpy(model, f"{name}.").items()
        },
    }
    files = {}
    for name in WEIGHT_FILES:
        if tensors[name]:
            save_file(tensors[name], str(path / name))
            files[name] = _sha256(path / name)
        elif (path / name).exists():
            (path / name).unlink()
    config = {
        "kind": BUNDLE_KIND,
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "encoders": _encoders_section(specs),
        "dim": cfg.dim,
        "ranks": {m.value: student.projections[m.value].rank for m in student.modalities},
        "student": {"kind": "low-rank", "hidden": int(getattr(student, "hidden", 0))},
        "fusion": {"strategy": cfg.fusion, "weights": {m.value: w for m, w in student.fusion.weights().items()}},
        "teacher": {"hidden": cfg.teacher_hidden, "layers": cfg.teacher_layers} if teacher is not None else None,
        "baselines": sorted(baselines),
        "training": cfg.model_dump(mode="json"),
        **summary,
        "files": files,
    }
    config["bundle_id"] = _config_digest(config)
    read_bundle_config(config, path)  # what is written must read back as a BundleConfig
    tmp = path / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tmp.replace(path / "config.json")  # the config (and so the id) appears only once the weights are written
    return config["bundle_id"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _config_digest(config: dict[str, Any]) -> str:
    body = {k: v for k, v in config.items() if k != "bundle_id"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def verify_bundle(path: Path, config: dict[str, Any]) -> None:
    """Recompute the bundle's digests; a mismatch names the file that changed."""
    recorded = config.get("bundle_id")
    if config.get("schema_version") == 1:  # one digest over the weight files, then the config
        digest = hashlib.sha256()
        for name in WEIGHT_FILES:
            if (path / name).exists():
                digest.update((path / name).read_bytes())
        digest.update(json.dumps({k: v for k, v in config.items() if k != "bundle_id"}, sort_keys=True).encode())
        if digest.hexdigest()[:16] != recorded:
            raise BundleError(
                f"bundle {str(path)!r} does not match its id {recorded!r}: a weight file or config.json was "
                f"changed after training; retrain it (or restore the original files)"
            )
        return
    for name, expected in sorted(config.get("files", {}).items()):
        if name not in WEIGHT_FILES:
            raise BundleError(f"bundle {str(path)!r} lists an unknown file {name!r}; valid: {list(WEIGHT_FILES)}")
        file = path / name
        if not file.is_file():
            raise BundleError(f"bundle {str(path)!r} is missing {name} (recorded in config.json)")
        if _sha256(file) != expected:
            raise BundleError(
                f"{str(file)!r} does not match the sha256 recorded in config.json: the file was replaced, "
                f"truncated or damaged after training; restore it or retrain the bundle"
            )
    if _config_digest(config) != recorded:
        raise BundleError(
            f"{str(path / 'config.json')!r} was edited after training (its content no longer hashes to bundle "
            f"id {recorded!r}); restore it or retrain the bundle"
        )


def read_bundle_config(raw: dict[str, Any], path: str | Path = "<config>") -> BundleConfig:
    """The typed config of a bundle from its config.json content (schema versions 1 and 2)."""
    from pydantic import ValidationError

    if raw.get("kind") != BUNDLE_KIND:
        raise BundleError(f"{str(path)!r} is not an mmalign bundle (kind={raw.get('kind')!r})")
    version = raw.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise BundleError(
            f"bundle {str(path)!r} has schema version {version!r}; this mmalign reads versions "
            f"{list(READABLE_SCHEMA_VERSIONS)}: retrain it or use a matching mmalign"
        )
    try:
        return BundleConfig.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{str(path)!r}: config.json does not match the BundleConfig schema: {exc}") from exc


def read_config_file(path: str | Path) -> tuple[dict[str, Any], BundleConfig]:
    """config.json of the bundle directory ``path``: its raw JSON (which the id hashes) and the typed config."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BundleError(f"{str(path)!r} is not a bundle: no config.json")
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{str(config_file)!r} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"{str(config_file)!r} is not a JSON object")
    return raw, read_bundle_config(raw, path)


def load_bundle_config(path: str | Path) -> BundleConfig:
    """The typed config of a bundle (a directory, or a name such as ``base``) without loading weights."""
    return read_config_file(resolve_bundle(path))[1]


#: Names that stand for a bundle shipped with mmalign, wherever a bundle path is accepted.
SHIPPED_BUNDLES = ("base",)


def shipped_bundle_dir(name: str = "base") -> Path:
    """The directory of a bundle shipped in the package data (``base``: the pretrained base bundle)."""
    return Path(__file__).resolve().parent / name


def resolve_bundle(path: str | Path) -> Path:
    """A bundle argument -> its directory: ``base`` names the shipped base bundle (unless a directory
    called ``base`` exists here, which wins: an explicit path is never shadowed)."""
    if isinstance(path, str) and path in SHIPPED_BUNDLES and not Path(path).is_dir():
        shipped = shipped_bundle_dir(path)
        if not (shipped / "config.json").is_file():
            raise BundleError(
                f"the shipped {path!r} bundle is not installed ({str(shipped)!r} has no config.json); "
                f"build it with `mmalign pretrain` or pass a bundle directory"
            )
        return shipped
    return Path(path)


def load_bundle(path: str | Path, *, with_teacher: bool = True) -> Bundle:
    """A bundle directory, or ``base`` for the shipped base bundle; digests are verified first."""
    from safetensors.numpy import load_file

    from mmalign.plugin.align.teacher import Teacher

    path = resolve_bundle(path)
    raw, config = read_config_file(path)
    verify_bundle(path, raw)
    cfg = TrainConfig.model_validate(_without_retired_options(config.training, path))
    dims = {Modality(m): e.dim for m, e in config.encoders.items()}
    ranks = {Modality(m): int(r) for m, r in config.ranks.items()}

    def load_into(module, tensors: dict[str, np.ndarray], prefix: str = ""):
        import torch

        state = {k[len(prefix) :]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(state, strict=True)
        return module.eval()

    def read(name: str) -> dict[str, np.ndarray]:
        try:
            return load_file(str(path / name))
        except Exception as exc:  # safetensors raises several types for a damaged header
            raise BundleError(f"{str(path / name)!r} cannot be read as safetensors: {exc}") from exc

    def load_checked(module, name: str, prefix: str = ""):
        try:
            return load_into(module, read(name) if isinstance(name, str) else name, prefix)
        except RuntimeError as exc:  # shapes or keys other than config.json implies
            raise BundleError(f"{str(path / str(name))!r} does not fit config.json: {exc}") from exc

    hidden = config.student.hidden if config.student is not None else cfg.student_hidden
    student = load_checked(_student_with_ranks(dims, cfg, ranks, hidden), "student.safetensors")
    teacher = None
    if with_teacher and config.teacher and (path / "teacher.safetensors").exists():
        teacher = Teacher(dims, cfg.dim, config.teacher.hidden, config.teacher.layers, dropout=cfg.dropout)
        teacher = load_checked(teacher, "teacher.safetensors")
    baselines = {}
    if config.baselines and (path / "baselines.safetensors").exists():
        tensors = read("baselines.safetensors")
        for name in config.baselines:
            try:
                baselines[name] = load_into(_student_with_ranks(dims, cfg, ranks), tensors, f"{name}.")
            except RuntimeError as exc:
                raise BundleError(f"{str(path / 'baselines.safetensors')!r} does not fit config.json: {exc}") from exc
    return Bundle(path, config, student, teacher, baselines)


def _student_with_ranks(dims, cfg: TrainConfig, ranks, hidden: int = 0):
    """A student of the recorded shape; ``hidden`` is the code residual's width (0 for the baselines
    and for bundles written before the student had one)."""
    from mmalign.plugin.align.student import Student

    student = Student(dims, cfg.dim, cfg.rank, cfg.fusion, hidden)
    for m, r in ranks.items():
        if student.projections[m.value].rank != r:
            raise BundleError(f"bundle rank for {m.value} is {r}, config implies {student.projections[m.value].rank}")
    return student


#: Training options that were measured to give nothing and removed (kept readable in old bundles).
RETIRED_OPTIONS = {"teacher_freeze_linear": False, "soft_target_temperature": 0.0, "feature_noise": 0.0, "mixup": 0.0}


def _without_retired_options(training: dict[str, Any], path) -> dict[str, Any]:
    for key, off in RETIRED_OPTIONS.items():
        if key in training and training[key] != off:
            raise BundleError(
                f"bundle {str(path)!r} was trained with the removed option {key}={training[key]!r}; "
                f"retrain it with this mmalign"
            )
    return {k: v for k, v in training.items() if k not in RETIRED_OPTIONS}
