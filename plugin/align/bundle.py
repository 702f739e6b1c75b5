"""Alignment bundles on disk: ``config.json`` + safetensors, never pickle.

config.json records the schema version, the encoder of each modality (name, id, dim, spec),
D, ranks, fusion, the training config and summary, held-out metrics, the split, and
``bundle_id`` (a hash of everything else, weights included).
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

BUNDLE_KIND = "mmalign-bundle"
BUNDLE_SCHEMA_VERSION = 1
WEIGHT_FILES = ("student.safetensors", "teacher.safetensors", "baselines.safetensors")


@dataclass
class Bundle:
    path: Path
    config: dict[str, Any]
    student: Any
    teacher: Any | None
    baselines: dict[str, Any]

    @property
    def bundle_id(self) -> str:
        return self.config["bundle_id"]

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    @property
    def modalities(self) -> list[Modality]:
        return [Modality(m) for m in self.config["encoders"]]

    def encoder_spec(self, modality: Modality) -> EncoderSpec:
        return ENCODER_SPEC_ADAPTER.validate_python(self.config["encoders"][Modality(modality).value]["spec"])

    def check_encoders(self, specs: dict[Modality, EncoderSpec]) -> None:
        """Refuse encoders other than those the bundle was trained on, naming both."""
        for modality, spec in specs.items():
            recorded = self.config["encoders"].get(modality.value)
            if recorded is None:
                raise BundleError(
                    f"bundle {self.bundle_id} has no {modality.value} projection; it was trained on "
                    f"{sorted(self.config['encoders'])}"
                )
            if recorded["encoder_id"] != encoder_id(spec):
                raise BundleError(
                    f"bundle {self.bundle_id} was trained on {modality.value} encoder {recorded['encoder_id']}, "
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
    digest = hashlib.sha256()
    for name in WEIGHT_FILES:
        if tensors[name]:
            save_file(tensors[name], str(path / name))
            digest.update((path / name).read_bytes())
        elif (path / name).exists():
            (path / name).unlink()
    config = {
        "kind": BUNDLE_KIND,
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "encoders": _encoders_section(specs),
        "dim": cfg.dim,
        "ranks": {m.value: student.projections[m.value].rank for m in student.modalities},
        "fusion": {"strategy": cfg.fusion, "weights": {m.value: w for m, w in student.fusion.weights().items()}},
        "teacher": {"hidden": cfg.teacher_hidden, "layers": cfg.teacher_layers} if teacher is not None else None,
        "baselines": sorted(baselines),
        "training": cfg.model_dump(mode="json"),
        **summary,
    }
    digest.update(json.dumps(config, sort_keys=True).encode())
    config["bundle_id"] = digest.hexdigest()[:16]
    (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config["bundle_id"]


def load_bundle(path: str | Path, *, with_teacher: bool = True) -> Bundle:
    from safetensors.numpy import load_file

    from mmalign.plugin.align.teacher import Teacher

    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BundleError(f"{str(path)!r} is not a bundle: no config.json")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{str(config_file)!r} is not valid JSON: {exc}") from exc
    if config.get("kind") != BUNDLE_KIND:
        raise BundleError(f"{str(path)!r} is not an mmalign bundle (kind={config.get('kind')!r})")
    version = config.get("schema_version")
    if version != BUNDLE_SCHEMA_VERSION:
        raise BundleError(
            f"bundle {str(path)!r} has schema version {version!r}; this mmalign reads version "
            f"{BUNDLE_SCHEMA_VERSION}: retrain it or use a matching mmalign"
        )
    cfg = TrainConfig.model_validate(_without_retired_options(config["training"], path))
    dims = {Modality(m): int(e["dim"]) for m, e in config["encoders"].items()}
    ranks = {Modality(m): int(r) for m, r in config["ranks"].items()}

    def load_into(module, tensors: dict[str, np.ndarray], prefix: str = ""):
        import torch

        state = {k[len(prefix) :]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(state, strict=True)
        return module.eval()

    student = _student_with_ranks(dims, cfg, ranks)
    load_into(student, load_file(str(path / "student.safetensors")))
    teacher = None
    if with_teacher and config.get("teacher") and (path / "teacher.safetensors").exists():
        teacher = Teacher(dims, cfg.dim, config["teacher"]["hidden"], config["teacher"]["layers"], dropout=cfg.dropout)
        load_into(teacher, load_file(str(path / "teacher.safetensors")))
    baselines = {}
    if config.get("baselines") and (path / "baselines.safetensors").exists():
        tensors = load_file(str(path / "baselines.safetensors"))
        for name in config["baselines"]:
            baselines[name] = load_into(_student_with_ranks(dims, cfg, ranks), tensors, f"{name}.")
    return Bundle(path, config, student, teacher, baselines)


def _student_with_ranks(dims, cfg: TrainConfig, ranks):
    from mmalign.plugin.align.student import Student

    student = Student(dims, cfg.dim, cfg.rank, cfg.fusion)
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
