"""Payload filters as users write them (``category=animals``) -> the store's typed :class:`Filter`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmalign.connectors.errors import ConfigError
from mmalign.connectors.query import Filter, Match
from mmalign.plugin.index.payload import RESERVED_PAYLOAD


def build_filter(filters: Mapping[str, Any] | None, exclude_ids: Sequence[str] = ()) -> Filter | None:
    """key=value conditions (AND). Keys other than the reserved payload fields address ``metadata.<key>``;
    a list value matches any of its elements. ``exclude_ids``: items left out of the results."""
    must = []
    for key, value in (filters or {}).items():
        path = key if key in RESERVED_PAYLOAD or key.startswith("metadata.") else f"metadata.{key}"
        values = value if isinstance(value, (list, tuple)) else [value]
        # A CLI value "2" should match a stored 2 as well as "2": one condition per value type, OR-ed.
        by_type: dict[type, list] = {}
        for v in values:
            by_type.setdefault(type(v), []).append(v)
            if isinstance(v, str) and v.lstrip("-").isdigit():
                by_type.setdefault(int, []).append(int(v))
        conditions = [Match(path, tuple(vs)) for vs in by_type.values()]
        must.append(conditions[0] if len(conditions) == 1 else Filter(should=tuple(conditions)))
    built = Filter(must=tuple(must)).excluding(list(exclude_ids))
    return None if built.empty else built


def parse_filters(values: Sequence[str]) -> dict[str, list[str]]:
    """``["category=animals", "category=food", "lang=en"]`` -> {"category": [...], "lang": [...]}."""
    out: dict[str, list[str]] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ConfigError(f"filter {value!r} is not KEY=VALUE")
        out.setdefault(key.strip(), []).append(val.strip())
    return out
