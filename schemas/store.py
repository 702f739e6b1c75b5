"""Where vectors are stored: an embedded Qdrant (path or memory) or a server by URL."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_QDRANT_PATH = "./mmalign-data/qdrant"


class StoreConfig(BaseModel):
    """Exactly one of ``path`` (embedded; ``":memory:"`` for an in-process store) or ``url``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(default=None, description="Embedded engine folder, or ':memory:'.")
    url: str | None = Field(default=None, description="Qdrant server URL, e.g. http://localhost:6333.")
    api_key: str | None = Field(default=None, repr=False)
    prefer_grpc: bool = False
    timeout_s: float = Field(default=30.0, gt=0)
    shard_number: int | None = Field(default=None, ge=1)
    replication_factor: int | None = Field(default=None, ge=1)
    max_retries: int = Field(default=3, ge=0, description="Retries of a failed server call, with backoff.")
    upsert_batch_size: int = Field(default=256, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> StoreConfig:
        if self.path is not None and self.url is not None:
            raise ValueError(f"give either path ({self.path!r}) or url ({self.url!r}), not both")
        if self.url is None and (self.api_key or self.prefer_grpc):
            raise ValueError("api_key and prefer_grpc only apply to a server: set url as well")
        return self

    @property
    def is_server(self) -> bool:
        return self.url is not None

    @property
    def resolved_path(self) -> str:
        return self.path if self.path is not None else DEFAULT_QDRANT_PATH
