"""Versioned collections: apps query an alias (``catalog``) that points at ``catalog__vN``.

Every multi-step change records its intent in the collection records before it acts, so that a rerun
after a crash finishes that change: a version records the alias it is for (``alias``), the version
that was live when it was built (``previous``: what ``rollback`` returns to) and its ``state``
(``building`` -> ``verified`` -> ``ready`` once it has been live).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mmalign.connectors.faults import crash_point
from mmalign.connectors.store import CollectionRecord, StoreError, VectorStore
from mmalign.schemas import VersionInfo

VERSION_SEP = "__v"


def utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def version_name(alias: str, version: int) -> str:
    return f"{alias}{VERSION_SEP}{version}"


def parse_version(name: str) -> tuple[str, int] | None:
    match = re.fullmatch(rf"(.+){re.escape(VERSION_SEP)}(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else None


def list_versions(store: VectorStore, alias: str) -> list[str]:
    found = [(parse_version(n), n) for n in store.list_collections()]
    return [n for parsed, n in sorted((p, n) for p, n in found if p and p[0] == alias)]


def resolve_for_write(
    store: VectorStore,
    name: str,
    dim: int,
    bundle_id: str,
    extra: Mapping[str, Any] | None = None,
    extra_vectors: Sequence[str] = (),
) -> CollectionRecord:
    """The physical collection to write ``name``'s points to, creating ``name__v1`` + alias on first use.

    A plain (non-alias) collection called ``name`` is used as it is. The record must match the bundle.
    ``extra_vectors`` (e.g. ``("collab",)``) are created with a new collection; an existing one must
    have them already (a named vector cannot be added to a collection later).
    """
    target = store.resolve_alias(name)
    if target is None and store.collection_exists(name):
        target = name
    if target is None:
        target = version_name(name, 1)
        record = store.collection_record(target)
        if record is not None:
            if record.alias != name:
                raise StoreError(
                    f"collection {target!r} exists but no alias {name!r} points at it; point the alias "
                    f"at it (mmalign rollback {name} --to v1) or drop it (mmalign drop-version {target})"
                )
            # an earlier ingest created it and stopped before the alias: finish that step
            VectorStore.check_compatible(record, dim=dim, bundle_id=bundle_id)
        else:
            record = store.create_collection(
                target,
                dim,
                bundle_id=bundle_id,
                extra={**(extra or {}), "alias": name, "created_at": utc_now(), "state": "ready"},
                extra_vectors=extra_vectors,
            )
            crash_point("ingest.version_created")
        store.set_alias(name, target)
        crash_point("ingest.alias_set")
        return record
    record = store.collection_record(target)
    VectorStore.check_compatible(record, dim=dim, bundle_id=bundle_id)
    missing = sorted(set(extra_vectors) - set(store.vector_sizes(target))) if extra_vectors else []
    if missing:
        raise StoreError(
            f"collection {target!r} has no {missing} vector, and a named vector can only be added when a "
            f"collection is created: ingest into a new collection name (or drop {name!r} first)"
        )
    return record


def resolve_for_read(store: VectorStore, name: str) -> CollectionRecord:
    record = store.collection_record(name)
    if record is None:
        existing = store.list_collections()
        raise StoreError(f"collection {name!r} does not exist; collections: {existing}")
    return record


def version_table(store: VectorStore, alias: str) -> list[VersionInfo]:
    """Every version of ``alias``: name, version number, bundle, point count, created time, live or not."""
    live = store.resolve_alias(alias)
    rows = []
    for name in list_versions(store, alias):
        record = store.collection_record(name)
        rows.append(
            VersionInfo(
                name=name,
                version=parse_version(name)[1],
                bundle_id=record.bundle_id,
                points=store.count(name),
                created_at=record.created_at,
                state=record.state,
                live=name == live,
            )
        )
    return rows


def rollback(store: VectorStore, alias: str, to: str | int | None = None) -> str:
    """Point ``alias`` back at version ``to``; by default at the version that was live before the last
    swap (recorded in the live version), else the newest ready version older than the live one."""
    live = store.resolve_alias(alias)
    rows = version_table(store, alias)
    by_name = {r.name: r for r in rows}
    if to is not None:
        wanted = to if isinstance(to, int) else int(str(to).lstrip("v"))
        target = next((r for r in rows if r.version == wanted), None)
        if target is None:
            raise StoreError(f"{alias!r} has no version v{wanted}; versions: {[r.name for r in rows]}")
    else:
        previous = store.collection_record(live).previous if live else None
        target = by_name.get(previous) if previous else None
        if target is None:
            live_version = parse_version(live)[1] if live and parse_version(live) else None
            older = [r for r in rows if live_version is not None and r.version < live_version and r.state == "ready"]
            if not older:
                raise StoreError(
                    f"{alias!r} has no older ready version to roll back to; versions: "
                    f"{[(r.name, r.state) for r in rows]}"
                )
            target = older[-1]
    if target.state != "ready":
        raise StoreError(f"{target.name} is {target.state!r}, not ready: refusing to make it live")
    if target.name == live:
        return live
    store.update_record(target.name, previous=live)  # a second rollback undoes this one
    crash_point("rollback.recorded")
    store.set_alias(alias, target.name)
    crash_point("rollback.swapped")
    return target.name


def rollback_target(store: VectorStore, alias: str) -> str | None:
    """The version a plain ``rollback`` would make live (kept by ``reembed --keep``, refused by drop)."""
    live = store.resolve_alias(alias)
    return store.collection_record(live).previous if live else None


def drop_version(store: VectorStore, name: str, *, force: bool = False) -> None:
    """Delete one physical version that no alias points at (e.g. left by an interrupted run)."""
    if not store.collection_exists(name):
        raise StoreError(f"collection {name!r} does not exist; collections: {store.list_collections()}")
    aliases = [a for a, c in store.aliases().items() if c == name]
    if aliases:
        raise StoreError(f"{name!r} is live behind alias {aliases[0]!r}: roll back or re-embed first")
    parsed = parse_version(name)
    if parsed and rollback_target(store, parsed[0]) == name and not force:
        raise StoreError(
            f"{name!r} is what `mmalign rollback {parsed[0]}` returns to; pass force=True (CLI: --force) to drop "
            f"it anyway"
        )
    store.delete_collection(name)
