"""The checks every stored point must pass, used when a point is read before it is trusted (ingest's
skip-check), after a write (:func:`seal_written`) and by ``store verify`` (:mod:`.verify`).

A point is trusted when its payload is an object whose ``item_id`` is the one its point id was made from
(uuid5), it has a ``fused`` vector and one vector per modality its payload lists, and every vector has
the collection's size, finite values and unit norm (collections are cosine: the engine stores unit
vectors).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmalign.connectors.errors import StoreError
from mmalign.connectors.query import SparseVector
from mmalign.connectors.store import VectorStore, point_id
from mmalign.plugin.index.versions import utc_now
from mmalign.schemas import Modality, VectorName

log = logging.getLogger(__name__)

#: |norm - 1| above this is a damaged vector (float32 unit vectors are within 1e-6).
NORM_TOLERANCE = 1e-3
_MODALITY_VECTORS = {m.value for m in Modality}


def point_problems(point: Any, dim: int, *, bundle_id: str | None = None) -> list[str]:
    """Why a stored point (``id``, ``payload``, ``vector``) cannot be trusted; empty when it can."""
    problems = []
    payload = point.payload
    if not isinstance(payload, dict):
        return [f"payload is {type(payload).__name__}, not an object"]
    item_id = payload.get("item_id")
    if not isinstance(item_id, str):
        problems.append(f"payload has no item_id (got {item_id!r})")
    elif point_id(item_id) != str(point.id).lower():
        problems.append(f"payload item_id {item_id!r} is not the item point {point.id} was written for")
    if bundle_id is not None and payload.get("bundle_id") != bundle_id:
        problems.append(f"written by bundle {payload.get('bundle_id')!r}, not the collection's {bundle_id!r}")
    vectors = point.vector
    if vectors is None:
        return problems
    if not isinstance(vectors, dict):
        return [*problems, f"vectors are {type(vectors).__name__}, not named vectors"]
    if VectorName.FUSED.value not in vectors:
        problems.append("no 'fused' vector")
    modalities = payload.get("modalities")
    if isinstance(modalities, list):
        absent = [m for m in modalities if m in _MODALITY_VECTORS and m not in vectors]
        if absent:
            problems.append(f"payload lists modalities {absent} that have no vector")
    elif "modalities" in payload:
        problems.append(f"payload modalities is {type(modalities).__name__}, not a list")
    for name, values in vectors.items():
        if not isinstance(values, SparseVector):  # sparse (lexical) vectors are checked when they are built
            problems.extend(vector_problems(name, values, dim))
    return problems


def vector_problems(name: str, values: Any, dim: int) -> list[str]:
    """Size, finiteness and unit norm of one stored vector."""
    try:
        vector = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return [f"vector {name!r} is not a list of numbers"]
    if vector.size != dim:
        return [f"vector {name!r} has {vector.size} values, not {dim}"]
    squared = float(vector @ vector)  # NaN/inf propagate; float64 holds the square of any float32
    if not math.isfinite(squared):
        return [f"vector {name!r} has NaN or infinite values"]
    norm = math.sqrt(squared)
    if abs(norm - 1.0) > NORM_TOLERANCE:
        return [f"vector {name!r} has norm {norm:.4g}, not 1"]
    return []


def stored_payloads(store: VectorStore, name: str, item_ids: Sequence[str], dim: int) -> dict[str, dict]:
    """item id -> payload of the stored points of ``item_ids`` that pass :func:`point_problems`: what an
    ingest may skip. A point that fails is left out (so it is written again) and named in a warning; a
    version whose points cannot be read at all is a StoreError that says how to repair it."""
    try:
        points = store.retrieve(name, list(item_ids), with_vectors=True)
    except StoreError as exc:
        raise StoreError(
            f"the stored points of {name!r} cannot be read ({exc}); the version is damaged: run "
            f"`mmalign store verify --collection {name} --repair` (with --catalog) to rebuild it"
        ) from exc
    trusted, failing = {}, []
    for p in points:
        problems = point_problems(p, dim)
        if problems:
            failing.append(f"{p.id}: {problems[0]}")
            continue
        trusted[p.payload.get("item_id")] = p.payload
    if failing:
        log.warning(
            "%s: %d stored point(s) fail their checks and are written again, e.g. %s", name, len(failing), failing[0]
        )
    return trusted


def seal_written(store: VectorStore, name: str, item_ids: Sequence[str], *, before: int | None, **record: Any) -> int:
    """After a write: read back every point written (``item_ids``) and check it, and check that no point
    was lost (the count is at least the one recorded ``before``). Raises StoreError naming what is wrong;
    else records the count (``points``), the time and ``record`` fields in the collection record and
    returns the count. This is what a later :func:`verify_collection` compares the count with."""
    physical = store.resolve_alias(name) or name
    dim = store.collection_record(physical).dim
    unique = list(dict.fromkeys(item_ids))
    problems: list[str] = []
    found = 0
    for start in range(0, len(unique), 256):
        batch = unique[start : start + 256]
        try:
            points = store.retrieve(physical, batch, with_vectors=True)
        except StoreError as exc:
            raise StoreError(f"reading back the points just written to {physical!r} failed: {exc}") from exc
        found += len(points)
        for p in points:
            problems += [f"{(p.payload or {}).get('item_id', p.id)}: {r}" for r in point_problems(p, dim)]
    if found != len(unique):
        problems.insert(0, f"{len(unique) - found} of the {len(unique)} points written are not there")
    counted = store.count(physical)
    if before is not None and counted < before:
        problems.insert(0, f"{physical!r} has {counted} points, fewer than the {before} recorded before this run")
    if problems:
        raise StoreError(
            f"the points written to {physical!r} fail verification: {'; '.join(problems[:3])}"
            + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
            + f"; run `mmalign store verify --collection {physical} --repair`"
        )
    store.update_record(physical, points=counted, verified_at=utc_now(), **record)
    return counted
