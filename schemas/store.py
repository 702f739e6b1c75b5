"""Where vectors are stored: an embedded engine (Qdrant Edge by default, or qdrant-client's local mode)
in a folder, or a Qdrant server by URL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_QDRANT_PATH = "./mmalign-data/qdrant"
#: Engines of an embedded store (a folder): Qdrant's own engine in-process, or qdrant-client's local mode.
EMBEDDED_ENGINES = ("edge", "local")
DEFAULT_ENGINE = "edge"


class StoreConfig(BaseModel):
    """Exactly one of ``path`` (embedded; ``":memory:"`` for an in-process store) or ``url``.

    ``engine`` picks the embedded engine: ``edge`` (default; Qdrant Edge: HNSW, payload indexes, a
    write-ahead log) or ``local`` (qdrant-client's local mode: exhaustive search, for tests and
    prototypes). A server URL always talks to the server. The ``hnsw_*`` and ``indexing_threshold_kb``
    settings apply to collections that the Edge engine creates.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(default=None, description="Embedded store folder, or ':memory:'.")
    url: str | None = Field(default=None, description="Qdrant server URL, e.g. http://localhost:6333.")
    engine: Literal["edge", "local"] | None = Field(
        default=None, description="Embedded engine: 'edge' (default) or 'local' (qdrant-client local mode)."
    )
    api_key: str | None = Field(default=None, repr=False)
    prefer_grpc: bool = False
    timeout_s: float = Field(default=30.0, gt=0)
    shard_number: int | None = Field(default=None, ge=1)
    replication_factor: int | None = Field(default=None, ge=1)
    write_consistency_factor: int | None = Field(
        default=None, ge=1, description="Server: replicas that must confirm a write (new collections)."
    )
    # -- collection layout for size (issue #25): applies to collections created with this config --------------
    quantization: Literal["int8", "binary"] | None = Field(
        default=None,
        description="Quantize the dense named vectors (Edge and a server; qdrant-client's local mode keeps the "
        "setting but searches the float vectors): 'int8' (scalar, quantile 0.99) or 'binary'; queries rescore "
        "the candidates with the original vectors.",
    )
    quantization_oversampling: float = Field(
        default=2.0,
        ge=1.0,
        description="Quantized search fetches this many times the asked number of candidates and rescores them "
        "with the original vectors (benchmarks/scale.py measures the recall).",
    )
    vectors_on_disk: bool = Field(
        default=False, description="Keep the original dense vectors on disk (memory-mapped), not in RAM."
    )
    max_retries: int = Field(default=3, ge=0, description="Retries of a failed server call, with backoff.")
    upsert_batch_size: int = Field(default=256, ge=1)
    hnsw_vectors: tuple[Literal["image", "text", "audio", "fused"], ...] = Field(
        default=("fused",),
        description="Named vectors that get an HNSW graph when the index is built (Edge); the others are "
        "searched exhaustively. Each one adds its own build time.",
    )
    hnsw_m: int = Field(default=16, ge=4, description="HNSW edges per node (Edge).")
    hnsw_ef_construct: int = Field(
        default=64,
        ge=4,
        description="HNSW build beam (Edge). 64, not Qdrant's 100: builds 40 % faster at the same recall on "
        "clustered 256-d vectors (benchmarks/store_engines.py --sweep).",
    )
    hnsw_ef: int | None = Field(default=None, ge=1, description="HNSW search beam (Edge); None: the engine's.")
    full_scan_threshold_kb: int = Field(
        default=40_000,
        ge=0,
        description="Edge: below this much vector data (per segment, or matching a filter) a query scans "
        "instead of walking the graph. 40,000, not Qdrant's 10,000: with 10,000 a filter matching 10 % of "
        "100,000 points walked the graph and found 0.6 of the true top-10; with 40,000 it scans the "
        "matches and is exact (benchmarks/store_engines.py).",
    )
    indexing_threshold_kb: int | None = Field(
        default=None, ge=0, description="Segments with more vector data than this get HNSW (Edge); None: default."
    )

    @model_validator(mode="after")
    def _one_target(self) -> StoreConfig:
        if self.path is not None and self.url is not None:
            raise ValueError(f"give either path ({self.path!r}) or url ({self.url!r}), not both")
        if self.url is None and (self.api_key or self.prefer_grpc):
            raise ValueError("api_key and prefer_grpc only apply to a server: set url as well")
        if self.url is not None and self.engine is not None:
            raise ValueError(f"engine {self.engine!r} is for an embedded store (a path); a url is always a server")
        return self

    @property
    def layout(self) -> dict:
        """The collection-layout settings new collections get (recorded with each collection)."""
        keys = ("shard_number", "replication_factor", "write_consistency_factor", "quantization", "vectors_on_disk")
        return {k: getattr(self, k) for k in keys if getattr(self, k) not in (None, False)}

    @property
    def write_streams(self) -> int:
        """Parallel upsert streams for bulk writes: 1 into an embedded store (one writer); for a server, Qdrant's
        bulk-upload advice: about one per shard, at least 2 and at most 4."""
        if self.url is None:
            return 1
        return max(2, min(4, self.shard_number or 1))

    @property
    def is_server(self) -> bool:
        return self.url is not None

    @property
    def resolved_path(self) -> str:
        return self.path if self.path is not None else DEFAULT_QDRANT_PATH

    @property
    def backend(self) -> Literal["server", "edge", "local"]:
        """Which engine serves this config: ``server`` (url), else the embedded ``engine`` (default edge)."""
        if self.url is not None:
            return "server"
        return self.engine or DEFAULT_ENGINE


#: What a collection version is doing. mmalign writes ``building`` (a re-embed writes it), ``verified``
#: (checked, not yet live), ``ready``, ``pushing`` (being copied in by ``store push``) and ``damaged``
#: (verify found it broken); an operator may set others (e.g. ``abandoned``): only ``ready`` versions are
#: rollback targets.
VERSION_STATES = ("building", "verified", "ready", "pushing", "damaged")
#: Version of the record format (the JSON each collection carries in Qdrant metadata or Edge's record file).
STORE_SCHEMA_VERSION = 1


class PushProgress(BaseModel):
    """Where a ``store push`` into this collection is: a rerun resumes after ``next_offset``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    source: str
    next_offset: str | None = None
    points: int = 0
    done: bool = False
    at: str | None = None


class CollabState(BaseModel):
    """The collaborative factors a users collection was rebuilt with (recommend/collab.py)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    config: dict = Field(default_factory=dict, description="The CollabConfig they were fitted with.")
    rank: int
    max_norm: float
    gram: dict | None = Field(default=None, description="Item factors' Gram matrix (packed), for fold-in.")
    warm_items: int = 0
    predicted_items: int = 0
    content_map: dict | None = Field(default=None, description="The content -> collab ridge map (packed).")


class CollectionRecord(BaseModel):
    """What mmalign records about a collection (a version, or a users collection), next to its points.

    Stored as ``{dim, bundle_id, schema_version, extra: {...}}`` (the format every store has today);
    :meth:`from_stored` and :meth:`stored` are the only readers and writers of that JSON. ``bundle_path``
    is a hint where the bundle was: whatever loads from it is checked against ``bundle_id``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    dim: int
    bundle_id: str | None = None
    schema_version: int = STORE_SCHEMA_VERSION
    alias: str | None = Field(default=None, description="The alias this version was built for.")
    state: str = Field(default="ready", min_length=1, description=f"One of {VERSION_STATES}, or an operator's.")
    previous: str | None = Field(default=None, description="The version the alias pointed at before this one.")
    created_at: str | None = None
    verified_at: str | None = None
    points: int | None = Field(default=None, description="Points counted when it was last verified.")
    bundle_path: str | None = None
    encoders: dict[str, str] = Field(default_factory=dict, description="Encoder name of each modality.")
    media_root: str | None = None
    catalog: str | None = Field(default=None, description="The catalog it was last ingested from.")
    collab: CollabState | None = None
    popularity: dict[str, int] = Field(default_factory=dict, description="Users collections: item -> count.")
    items_collection: str | None = None
    push: PushProgress | None = None
    layout: dict[str, Any] = Field(
        default_factory=dict, description="Shards, replicas, quantization, vectors on disk it was created with."
    )
    damage: list[str] | None = Field(default=None, description="What verify found broken (state damaged).")
    replaced_by: str | None = Field(default=None, description="The version that was rebuilt in place of this one.")
    rebuilt_from: str | None = Field(default=None, description="The damaged version this one was rebuilt from.")
    restoring: str | None = Field(
        default=None, description="SHA-256 of the parts of the snapshot a restore is writing into this version."
    )
    restored_from: str | None = Field(default=None, description="The snapshot archive this version was restored from.")

    #: Fields stored at the top of the JSON; all others go under ``extra``.
    TOP_LEVEL: ClassVar[tuple[str, ...]] = ("dim", "bundle_id", "schema_version")

    @classmethod
    def from_stored(cls, name: str, stored: dict) -> CollectionRecord:
        """The record of ``name`` from its stored JSON (today's format, and the keys of older versions)."""
        extra = dict(stored.get("extra") or {})
        return cls(
            name=name,
            dim=int(stored["dim"]),
            bundle_id=stored.get("bundle_id"),
            schema_version=int(stored.get("schema_version", 0)),
            **extra,
        )

    def stored(self) -> dict:
        """The JSON kept with the collection."""
        fields = self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
        fields.pop("name")
        top = {k: fields.pop(k, None) for k in self.TOP_LEVEL}
        return {**top, "extra": fields}

    def carried(self, drop: Iterable[str] = ()) -> dict[str, Any]:
        """The recorded fields (besides name, dim, bundle id and schema version; an operator's own keys too) that a
        new collection made from this one starts with, less those named in ``drop``: the ``extra`` of
        ``VectorStore.create_collection``."""
        dropped = set(drop)
        return {k: v for k, v in self.extra.items() if k not in dropped}

    def updated(self, **changes) -> CollectionRecord:
        """A copy with ``changes`` (validated: a wrong type for a known field is refused)."""
        return type(self).model_validate({**self.model_dump(), **changes})

    @property
    def extra(self) -> dict:
        """The recorded fields besides name, dim, bundle id and schema version, as a dict (read-only view
        for code written before the record was typed; read the attributes instead)."""
        fields = self.model_dump(exclude_none=True)
        for key in ("name", *self.TOP_LEVEL):
            fields.pop(key, None)
        return fields
