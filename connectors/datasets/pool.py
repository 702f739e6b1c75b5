"""The pooled pretraining corpus: image+text pairs from public icon sets (npm ``@iconify/json``,
tags and aliases of ``@mdi/svg``), licence recorded per item, for ``mmalign pretrain``.

Each icon becomes one item: its SVG (written from the set's JSON into the pool's media folder) is the
image; the text is its name normalised to words ("arrow-left-bold" -> "arrow left bold"), its
category in the set, and its aliases (plus Material Design Icons' tags and aliases).

What is left out, and why (the builder prints it):

- every emoji set (iconify's ``Emoji`` category, and by name: openmoji, noto, twemoji, fluent-emoji,
  emojione, fxemoji, streamline-emojis, ...) and every clip-art collection (``Holiday / Seasonal``,
  ``High Detail Multicolor``, the ``withicons-*`` sticker/3D styles, memes): those domains are kept
  for independent checks;
- sets whose licence does not allow reuse in any product (``-NC`` licences, or none recorded);
- flags (a country's flag says nothing its name does not, and flags are an emoji domain);
- the catalogs that are evaluated (papirus, tuxpaint, wesnoth): they are not icon sets of iconify,
  and ``excluded_sources`` names them so that the pool record says so.

Variants of one concept (outline/filled/duotone/-bold/-thin of "home") share a ``group`` id; a set
gives at most one variant of each concept (the first by name) and at most ``per_set`` concepts, so
that no set dominates, and the rows are written round-robin over sets: any prefix of the pool is
balanced over its sources. Splits of the pool are made by group (:func:`group_split`), so a concept
is never on both sides. Nothing of the icon sets is copied into this repository; the npm packages are
installed at run time into a cache folder (``~/.cache/mmalign/npm``) when they are missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from mmalign.connectors.datasets.jsonl import write_jsonl
from mmalign.connectors.datasets.papirus import words
from mmalign.connectors.errors import SourceError

NPM_PACKAGES = ("@iconify/json", "@mdi/svg")
DEFAULT_NPM_CACHE = Path(os.environ.get("MMALIGN_NPM_CACHE", Path.home() / ".cache" / "mmalign" / "npm"))
#: Sets kept out by name (emoji and clip art, whatever their category says).
EXCLUDED_NAME_PATTERNS = (
    "emoji",
    "openmoji",
    "noto",
    "twemoji",
    "emojione",
    "fxemoji",
    "withicons-",
    "streamline-memes",
    "flag",
)
#: iconify categories kept out: emoji, clip art, flags.
EXCLUDED_CATEGORIES = ("Emoji", "Holiday / Seasonal", "High Detail Multicolor", "Flags")
#: The catalogs that are evaluated; never part of the pool that the shipped base bundle learns from.
EVALUATED_CATALOGS = ("papirus", "tuxpaint", "wesnoth")
#: Words of an icon name that name a drawing style, not a concept.
VARIANT_WORDS = frozenset(
    "outline outlined filled fill solid duotone duo bold thin light regular rounded round sharp twotone two tone "
    "baseline line linear broken bulk mini micro small sm lg alt variant o stroke stroked glyph flat color "
    "colored multicolor mono monochrome".split()
)
_SIZE = re.compile(r"^\d{1,3}(px)?$")


def licence_allowed(spdx: str | None) -> bool:
    """A licence that allows reuse in a product: recorded, and not a non-commercial one."""
    return bool(spdx) and "-NC" not in spdx.upper()


def excluded_reason(prefix: str, info: dict) -> str | None:
    """Why an iconify set is kept out of the pool (None: it is used)."""
    category = info.get("category")
    if category in EXCLUDED_CATEGORIES:
        return f"category {category!r}"
    for pattern in EXCLUDED_NAME_PATTERNS:
        if pattern in prefix or pattern in str(info.get("name", "")).lower():
            return f"name matches {pattern!r} (emoji, clip art or flags)"
    spdx = (info.get("license") or {}).get("spdx")
    if not licence_allowed(spdx):
        return f"licence {spdx!r} does not allow reuse"
    return None


def concept(name: str) -> str:
    """The concept of an icon name: its words less style and size words ("home-outline-24" -> "home")."""
    kept = [w for w in words(name) if w not in VARIANT_WORDS and not _SIZE.match(w)]
    return " ".join(kept) or " ".join(words(name))


def group_id(concept_words: str) -> str:
    """One group per concept across all sets (a "home" of any set is one concept)."""
    return hashlib.sha1(concept_words.encode()).hexdigest()[:12]


def describe(name: str, category: str | None, aliases: Iterable[str], tags: Iterable[str] = ()) -> str:
    """ "<name words>[, <category>][; also <alias>; ...]" (at most 4 aliases/tags)."""
    main = " ".join(words(name))
    text = main
    if category:
        text += ", " + " ".join(words(category.replace("/", " ")))
    seen, extra = {main}, []
    for alias in [*aliases, *tags]:
        alias_text = " ".join(words(alias.replace("/", " ")))
        if alias_text and alias_text not in seen:
            seen.add(alias_text)
            extra.append(alias_text)
    if extra:
        text += "; also " + "; ".join(extra[:4])
    return text


def svg_document(icon: dict, defaults: dict) -> str:
    """A standalone SVG of one iconify icon (``currentColor`` drawn black on the loader's white)."""
    left, top = icon.get("left", defaults.get("left", 0)), icon.get("top", defaults.get("top", 0))
    width, height = icon.get("width", defaults.get("width", 16)), icon.get("height", defaults.get("height", 16))
    body = icon["body"].replace("currentColor", "#000")
    transform = []
    if icon.get("hFlip"):
        transform.append(f"translate({2 * left + width} 0) scale(-1 1)")
    if icon.get("vFlip"):
        transform.append(f"translate(0 {2 * top + height}) scale(1 -1)")
    if icon.get("rotate"):
        transform.append(f"rotate({90 * int(icon['rotate'])} {left + width / 2} {top + height / 2})")
    if transform:
        body = f'<g transform="{" ".join(transform)}">{body}</g>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{left} {top} {width} {height}" width="{width}" height="{height}">{body}</svg>'
    )


def ensure_npm_packages(cache: Path = DEFAULT_NPM_CACHE, echo: Callable[[str], None] = print) -> Path:
    """``node_modules`` of the pool's npm packages, installed into ``cache`` when missing."""
    modules = cache / "node_modules"
    if all((modules / p / "package.json").is_file() for p in NPM_PACKAGES):
        return modules
    echo(f"installing {' '.join(NPM_PACKAGES)} with npm into {cache} (once; ~650 MB)")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), *NPM_PACKAGES],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise SourceError(f"npm could not install {list(NPM_PACKAGES)} into {str(cache)!r}: {detail[-500:]}") from exc
    return modules


def _mdi_meta(modules: Path) -> dict[str, dict]:
    meta = modules / "@mdi" / "svg" / "meta.json"
    if not meta.is_file():
        return {}
    return {m["name"]: m for m in json.loads(meta.read_text())}


def build_pool(
    out: str | Path,
    *,
    modules: Path | None = None,
    per_set: int = 400,
    seed: int = 0,
    limit: int | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[Path, list[dict], dict]:
    """Write ``out`` (JSON Lines) and the SVGs under ``out``'s folder/``pool-media``.

    Returns (catalog path, items, description) where the description (sources with pair counts and
    licences, the sets left out and why) is what a base bundle records as its ``pool``.
    """
    out = Path(out)
    modules = modules or ensure_npm_packages(echo=echo)
    root = modules / "@iconify" / "json"
    collections_file = root / "collections.json"
    if not collections_file.is_file():
        raise SourceError(f"{str(collections_file)!r} is missing: @iconify/json is not installed in {str(modules)!r}")
    collections = json.loads(collections_file.read_text())
    mdi = _mdi_meta(modules)
    media = out.parent / "pool-media"
    per_source: dict[str, list[dict]] = {}
    excluded: dict[str, str] = {}
    licences: dict[str, str] = {}
    rng = random.Random(seed)
    for prefix in sorted(collections):
        info = collections[prefix]
        reason = excluded_reason(prefix, info)
        if reason:
            excluded[prefix] = reason
            continue
        data = json.loads((root / "json" / f"{prefix}.json").read_text())
        licences[prefix] = info["license"]["spdx"]
        items = _set_items(prefix, data, info, mdi if prefix == "mdi" else {}, media, per_set, rng)
        if items:
            per_source[prefix] = items
    rows = list(_round_robin(per_source.values()))
    if limit:
        rows = rows[:limit]
    write_jsonl(out, rows)
    counts = Counter(r["metadata"]["source"] for r in rows)
    description = {
        "name": "iconify-pool",
        "n_pairs": len(rows),
        "sources": [
            {"source": f"iconify:{p}", "pairs": counts[f"iconify:{p}"], "licence": licences[p]}
            for p in sorted(per_source)
            if counts[f"iconify:{p}"]
        ],
        "excluded": [f"iconify:{p}: {why}" for p, why in sorted(excluded.items())]
        + [f"{c}: an evaluated catalog (leave-catalog-out)" for c in EVALUATED_CATALOGS],
    }
    echo(
        f"pool: {len(rows)} pairs from {len(description['sources'])} icon sets, "
        f"{len({r['metadata']['group'] for r in rows})} concept groups; {len(excluded)} sets left out"
    )
    for source in description["sources"]:
        echo(f"  {source['source']}: {source['pairs']} pairs ({source['licence']})")
    for line in description["excluded"]:
        echo(f"  left out: {line}")
    return out, rows, description


def _set_items(prefix, data, info, mdi, media: Path, per_set: int, rng) -> list[dict]:
    icons = data.get("icons", {})
    aliases: dict[str, list[str]] = {}
    for alias, target in (data.get("aliases") or {}).items():
        if target.get("parent") in icons and set(target) == {"parent"}:
            aliases.setdefault(target["parent"], []).append(alias)
    category_of = {name: cat for cat, names in (data.get("categories") or {}).items() for name in names}
    by_concept: dict[str, str] = {}
    for name in sorted(icons):
        if icons[name].get("hidden") or not re.search(r"[a-z]{2}", " ".join(words(name))):
            continue
        by_concept.setdefault(concept(name), name)  # the first variant by name
    concepts = sorted(by_concept)
    rng.shuffle(concepts)
    items = []
    folder = media / prefix
    for key in concepts[:per_set]:
        name = by_concept[key]
        meta = mdi.get(name, {})
        tags = meta.get("tags", [])
        path = folder / f"{name}.svg"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(svg_document(icons[name], data))
        items.append(
            {
                "id": f"{prefix}:{name}",
                "image": path.relative_to(media.parent).as_posix(),
                "text": describe(name, category_of.get(name), [*aliases.get(name, []), *meta.get("aliases", [])], tags),
                "metadata": {
                    "source": f"iconify:{prefix}",
                    "set": info.get("name", prefix),
                    "licence": info["license"]["spdx"],
                    "group": group_id(key),
                    "concept": key,
                },
            }
        )
    return items


def _round_robin(lists: Iterable[list[dict]]) -> Iterable[dict]:
    queues = [list(items) for items in lists]
    depth = max((len(q) for q in queues), default=0)
    for i in range(depth):
        for q in queues:
            if i < len(q):
                yield q[i]


def group_split(
    item_ids: list[str], groups: dict[str, str], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """(train, val) ids with whole groups on one side: a concept never on both."""
    unique = sorted(set(groups.get(i, i) for i in item_ids))
    random.Random(seed).shuffle(unique)
    held = set(unique[: max(1, int(round(val_fraction * len(unique))))])
    train = [i for i in item_ids if groups.get(i, i) not in held]
    val = [i for i in item_ids if groups.get(i, i) in held]
    return train, val
