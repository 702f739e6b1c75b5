"""The interface every storage engine implements for :class:`~mmalign.connectors.store.VectorStore`.

Like qdrant-client's ``QdrantBase`` (one typed surface that the remote and the local client both
implement), :class:`StoreBackend` is the one surface of the embedded Edge engine
(:mod:`.edge_store`), qdrant-client's local mode and a server (:mod:`.store_client`). The facade
validates and batches; a backend only translates to its engine. Points are named by point id
(uuid5 of the item id) here; queries are :mod:`.query` objects, whose items the backend resolves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmalign.connectors.query import Filter, Point, Query, SparseVector

#: (point id, named vectors, payload) as the facade hands them to a backend's ``upsert``: dense vectors as
#: float32 arrays, sparse ones as :class:`~mmalign.connectors.query.SparseVector`.
PointRow = tuple[str, Mapping[str, np.ndarray | SparseVector], dict]
#: ``True``/``False``, or the names of the payload fields / vectors wanted.
Selection = bool | list[str]


@runtime_checkable
class StoreBackend(Protocol):
    """One engine: collections (with mmalign's record as metadata), aliases, points, queries, indexes."""

    engine: str

    @property
    def target(self) -> str:
        """Where the engine stores: a folder, ``:memory:`` or a URL."""

    def close(self) -> None: ...

    # collections
    def create(
        self, name: str, dim: int, vector_names: Sequence[str], meta: dict, on_disk: bool, sparse: Sequence[str] = ()
    ) -> None:
        """Dense ``vector_names`` of size ``dim`` (cosine) and ``sparse`` vectors with the IDF modifier."""

    def exists(self, name: str) -> bool: ...
    def read(self, name: str) -> tuple[dict | None, dict[str, int]] | None:
        """(mmalign's record or None, size of each named vector), or None when ``name`` does not exist."""

    def sparse_vectors(self, name: str) -> list[str]:
        """Names of the sparse vectors of ``name`` (an alias is followed)."""

    def write_meta(self, name: str, meta: dict) -> None: ...
    def list_collections(self) -> list[str]: ...
    def delete(self, name: str) -> None: ...
    def count(self, name: str) -> int: ...

    # aliases
    def aliases(self) -> dict[str, str]: ...
    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` atomically: a crash leaves the old target or the new one."""

    # points
    def upsert(self, name: str, points: Sequence[PointRow]) -> None: ...
    def retrieve(
        self, name: str, ids: Sequence[str], with_payload: Selection, with_vectors: Selection
    ) -> list[Point]: ...

    def overwrite_payload(self, name: str, pid: str, payload: dict) -> None: ...
    def scroll(
        self, name: str, offset: Any, limit: int, with_payload: Selection, with_vectors: Selection
    ) -> tuple[list[Point], Any]:
        """One page and the offset of the next one (None at the end)."""

    def query(
        self, name: str, query: Query, *, limit: int, query_filter: Filter | None, with_payload: Selection, exact: bool
    ) -> list[Point]:
        """The scored points of ``query`` (a Nearest or a Recommend: VectorStore runs a Fused query's branches
        one by one and fuses them itself, connectors/fusion.py), best first."""

    # indexes and files
    def build_index(self, name: str, fields: Mapping[str, str]) -> dict: ...
    def disk_bytes(self) -> int | None:
        """Bytes the engine's files occupy (allocated blocks), or None when it keeps no files here."""
