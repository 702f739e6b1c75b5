"""The package layout is a contract: one installed namespace, layered imports, one door to Qdrant.

These tests read the source with ``ast`` (imports inside functions count too: a cycle hidden behind a
lazy import is still a cycle) and build the wheel to check what a user's environment receives.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"plugin": "mmalign.plugin", "connectors": "mmalign.connectors", "schemas": "mmalign.schemas"}

#: Lower layers never import higher ones (same layer: allowed, but no cycles).
LAYERS = [
    ("mmalign.schemas",),
    ("mmalign.connectors",),
    ("mmalign.plugin.encoders",),
    ("mmalign.plugin.features",),
    ("mmalign.plugin.align",),
    ("mmalign.plugin.index",),
    ("mmalign.plugin.recommend",),
    ("mmalign.plugin.workflows",),
    ("mmalign.plugin.cli", "mmalign.plugin.serve", "mmalign.plugin.__main__", "mmalign.plugin.schema_export"),
]


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for every mmalign import, at any depth of the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmalign"):
            names = [a.name for a in node.names]
            target = node.module
            # `from mmalign.plugin.encoders import registry` imports a submodule
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            out.append((target, [n for n in names if f"{target}.{n}" not in MODULES], node.lineno))
            out.extend((s, [], node.lineno) for s in subs)
        elif isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names if a.name.startswith("mmalign"))
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        graph[module] = {target for target, _, _ in _imports(module, path) if target in MODULES and target != module}
    return graph


def _layer(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return len(LAYERS)  # mmalign.plugin itself: the public facade on top


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_layers_only_import_downwards():
    wrong = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, targets in _graph().items()
        for t in targets
        if _layer(t) > _layer(m)
    ]
    assert not wrong, "\n".join(wrong)


def test_query_path_does_not_import_the_write_path():
    graph = _graph()
    seen, todo = set(), ["mmalign.plugin.index.search"]
    while todo:
        for t in graph[todo.pop()] - seen:
            seen.add(t)
            todo.append(t)
    assert not seen & {"mmalign.plugin.index.ingest", "mmalign.plugin.index.reembed", "mmalign.plugin.features.extract"}


def test_no_private_names_cross_modules():
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {names} from {target}"
        for module, path in MODULES.items()
        for target, names, line in _imports(module, path)
        if target != module and any(n.startswith("_") for n in names)
    ]
    assert not wrong, "\n".join(wrong)


#: The modules that know qdrant-client's or Qdrant Edge's types: the two store backends. Everything else
#: speaks mmalign's typed queries (connectors/query.py) through VectorStore.
ENGINE_MODULES = {"connectors/store_client.py", "connectors/edge_store.py"}
#: Code that measures or tests the engines themselves (raw Edge baselines, qdrant-client's exception types).
ENGINE_USERS = {
    "benchmarks/store_engines.py",
    "tests/unit/connectors/test_store.py",
    "tests/unit/connectors/test_fusion.py",  # mmalign's fusion against qdrant-client's reference formulas
    "tests/unit/connectors/test_store_layout.py",
    "tests/unit/test_layout.py",
}


def _reaches_past_the_store(node: ast.Attribute) -> bool:
    """``x.client``, ``x._client``, ``x._call``, ``x._backend``, or ``store._open()`` (the facade's engine):
    code that goes around VectorStore to its engine."""
    if node.attr in ("client", "_client", "_call", "_backend"):
        return True
    owner = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
    return node.attr == "_open" and owner in ("store", "vs", "source", "target")


def test_only_the_store_backends_know_qdrant_types():
    wrong = []
    for path in [
        *ROOT.glob("plugin/**/*.py"),
        *ROOT.glob("connectors/**/*.py"),
        *ROOT.glob("schemas/**/*.py"),
        *ROOT.glob("benchmarks/*.py"),
        *ROOT.glob("examples/*.py"),
        *ROOT.glob("tests/**/*.py"),
    ]:
        name = path.relative_to(ROOT).as_posix()
        if name in ENGINE_MODULES or name == "connectors/store.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and _reaches_past_the_store(node):
                wrong.append(f"{name}:{node.lineno} uses .{node.attr}")
            if isinstance(node, (ast.Import, ast.ImportFrom)) and name not in ENGINE_USERS:
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(m.split(".")[0] in ("qdrant_client", "qdrant_edge") for m in modules):
                    wrong.append(f"{name}:{node.lineno} imports {modules}")
    assert not wrong, "\n".join(wrong)


def test_pyproject_lists_every_package():
    import tomllib

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert declared == on_disk


def test_wheel_installs_one_namespace(tmp_path):
    """Build the wheel (no dependencies needed) and read what it would install."""
    pytest.importorskip("setuptools")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("mmalign-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("mmalign-")}  # the .dist-info folder aside
    assert top == {"mmalign"}, top
    assert "mmalign/__init__.py" not in names  # a PEP 420 namespace: nothing generic at the top
    for module, path in MODULES.items():
        inside = "mmalign/" + str(path.relative_to(ROOT)).replace("\\", "/")
        assert inside in names, f"{module} missing from the wheel"
    assert "mmalign/plugin/encoders/specs/presets/offline-small.json" in names
    assert "mmalign/plugin/encoders/vocabularies/imagenet-1k.json" in names
    assert {f"mmalign/plugin/serve/static/{n}" for n in ("index.html", "app.js", "app.css", "icon.svg")} <= set(names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mmalign = mmalign.plugin.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_environment_has_no_generic_top_level_modules(tmp_path):
    """Outside the repository, `import plugin` fails and `import mmalign.plugin` works without torch."""
    code = (
        "import importlib.util, sys\n"
        "assert all(importlib.util.find_spec(n) is None for n in ('plugin', 'connectors', 'schemas')), "
        "[importlib.util.find_spec(n) for n in ('plugin', 'connectors', 'schemas')]\n"
        "import mmalign.plugin, mmalign.plugin.cli\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
