"""What ``mmalign serve`` is configured with (the CLI options, as one object)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mmalign.schemas import StoreConfig

#: Request bodies larger than this are refused with 413 (``--max-body-mb``).
DEFAULT_MAX_BODY_BYTES = 16 << 20


class ServeConfig(BaseModel):
    """The service's settings. ``batching=False`` encodes each query alone (the benchmark's baseline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collection: str = Field(description="The alias (or plain collection) the service answers from.")
    store: StoreConfig = Field(default_factory=StoreConfig)
    bundle: Path | None = Field(
        default=None, description="The bundle folder; default: the one recorded with the live collection."
    )
    device: str = "auto"
    api_key: str | None = Field(default=None, repr=False, description="Required on /v1/* and /metrics when set.")
    media_root: Path | None = Field(
        default=None, description="Folder the items' media paths are relative to; media is served only from it."
    )
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    batching: bool = True
    max_batch: int = Field(default=32, ge=1, description="Most queries of one modality encoded together.")
    max_wait_ms: float = Field(default=4.0, ge=0, description="How long a batch waits for more queries.")
    k_max: int = Field(default=100, ge=1)
    max_inputs: int = Field(default=8, ge=1, description="Most query inputs (texts, files, like ids) per request.")
    max_text_chars: int = Field(default=2000, ge=1)
    decode_workers: int = Field(default=4, ge=1, description="Threads that decode uploaded media.")
    reload_timeout_s: float = Field(default=300.0, gt=0, description="How long a request waits for a reload.")
    warm_up: bool = Field(default=True, description="Encode one query per modality before answering.")
