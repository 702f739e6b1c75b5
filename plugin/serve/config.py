"""What ``mmalign serve`` is configured with (the CLI options, as one object)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmalign.plugin.serve.jobs import JobsConfig
from mmalign.schemas import StoreConfig

#: Request bodies larger than this are refused with 413 (``--max-body-mb``).
DEFAULT_MAX_BODY_BYTES = 16 << 20
#: Batch sizes per modality on a CPU, from measurements on a 2-core CPU (docs/serve.md#benchmark): MiniLM
#: text costs 2-4x less per query in batches of 16 than alone; EfficientNet images cost as much or more
#: per image in a batch (up to 2x more under load), and Whisper pads every clip to 30 s, so batches of
#: images or sounds only delay their queries.
CPU_MAX_BATCH = {"text": 16, "image": 1, "audio": 1}
#: On a GPU every encoder gains from batches.
GPU_MAX_BATCH = {"text": 64, "image": 32, "audio": 8}
MODALITY_NAMES = ("text", "image", "audio")


class ServeConfig(BaseModel):
    """The service's settings. ``batching=False`` encodes each query alone (the benchmark's baseline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collection: str = Field(description="The alias (or plain collection) the service answers from.")
    store: StoreConfig = Field(default_factory=StoreConfig)
    bundle: Path | None = Field(
        default=None, description="The bundle folder; default: the one recorded with the live collection."
    )
    device: str = "auto"
    runtime: str | None = Field(
        default=None, description="torch, onnx or auto (None: $MMALIGN_RUNTIME, else auto): plugin/encoders/runtime.py."
    )
    api_key: str | None = Field(default=None, repr=False, description="Required on /v1/* and /metrics when set.")
    media_root: Path | None = Field(
        default=None, description="Folder the items' media paths are relative to; media is served only from it."
    )
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    batching: bool = True
    max_batch: dict[str, int] | None = Field(
        default=None,
        description="Most queries of one modality encoded together (a number: the same for every modality); "
        "modalities not named, or None: CPU_MAX_BATCH or GPU_MAX_BATCH by the device.",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads of the encoders in this process (torch intra-op; CTranslate2 unless "
        "MMALIGN_CT2_THREADS is set); None leaves them as they are.",
    )
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="0: adaptive batching (a lone query is encoded at once; queries that arrive while the model "
        "is busy form the next batch); above 0, a fixed window a batch waits for more queries.",
    )
    k_max: int = Field(default=100, ge=1)
    max_inputs: int = Field(default=8, ge=1, description="Most query inputs (texts, files, like ids) per request.")
    max_text_chars: int = Field(default=2000, ge=1)
    decode_workers: int = Field(default=4, ge=1, description="Threads that decode uploaded media.")
    reload_timeout_s: float = Field(default=300.0, gt=0, description="How long a request waits for a reload.")
    warm_up: bool = Field(default=True, description="Encode one query per modality before answering.")
    jobs: JobsConfig = Field(default_factory=JobsConfig, description="How write jobs run (plugin/serve/jobs.py).")
    model_process: bool = Field(
        default=False,
        description="Run the encoders in a process of their own (``mmalign serve`` does by default): the "
        "HTTP work then never holds them up on Python's GIL.",
    )

    @field_validator("max_batch", mode="before")
    @classmethod
    def _per_modality(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {m: value for m in MODALITY_NAMES}
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(MODALITY_NAMES))
            if unknown:
                raise ValueError(f"max_batch has unknown modality {unknown[0]!r}; modalities: {list(MODALITY_NAMES)}")
        return value

    @field_validator("max_batch")
    @classmethod
    def _positive(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        bad = {m: n for m, n in (value or {}).items() if n < 1}
        if bad:
            raise ValueError(f"max_batch must be >= 1, got {bad}")
        return value


def resolve_max_batch(config: ServeConfig) -> dict[str, int]:
    """The batch size per modality: what the config names, the device's defaults for the rest."""
    from mmalign.plugin.encoders.device import select_device

    defaults = GPU_MAX_BATCH if select_device(config.device).type == "cuda" else CPU_MAX_BATCH
    return {**defaults, **(config.max_batch or {})}
