"""Crash consistency, in the spirit of qdrant's crasher: a child process running ingest, reembed or
rollback is SIGKILLed at every named step boundary (``MMALIGN_CRASH_AT``) and at random moments; a
rerun must then leave exactly the state of a clean run: the same point count and ids, vectors equal
(float noise aside), the alias on a complete version, and rollback back to the previous bundle.

``MMALIGN_CRASH_RANDOM`` sets the number of random kills per operation (default 3; the soak in
``benchmarks/crash_soak.py`` runs many more).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.ingest import ingest
from mmalign.plugin.index.reembed import reembed
from mmalign.plugin.index.versions import rollback, version_table
from mmalign.schemas import StoreConfig
from tests.tiny_catalog import N_ITEMS

ROOT = Path(__file__).resolve().parents[2]
RANDOM_KILLS = int(os.environ.get("MMALIGN_CRASH_RANDOM", "3"))
INGEST_STEPS = ["ingest.version_created", "ingest.alias_set", "ingest.chunk_queued:1", "ingest.chunk_queued:4"]
REEMBED_STEPS = [
    "reembed.version_created",
    "reembed.chunk_written:1",
    "reembed.chunk_written:5",
    "reembed.verified",
    "reembed.swapped",
    "reembed.marked_ready",
]
ROLLBACK_STEPS = ["rollback.recorded", "rollback.swapped"]
KILLS: list[str] = []  # what was done, for the summary line


def run_child(op: str, store: Path, base: Path, *, crash_at: str | None = None, kill_after: float | None = None):
    """Run one operation in a child; returns its exit code (-9 when killed) and how long the operation
    ran after the child's imports."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MMALIGN_CRASH_AT", None)
    if crash_at:
        env["MMALIGN_CRASH_AT"] = crash_at
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_child", op, str(store), str(base)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    started = time.perf_counter()
    if kill_after is not None:
        time.sleep(kill_after)
        child.send_signal(signal.SIGKILL)
    _, err = child.communicate(timeout=300)
    if child.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"{op} child failed ({child.returncode}):\n{err[-3000:]}")
    return child.returncode, time.perf_counter() - started


def vectors(store: VectorStore, name: str) -> dict[str, dict[str, np.ndarray]]:
    return {
        p.payload["item_id"]: {k: np.asarray(v) for k, v in p.vector.items()}
        for p in store.scroll(name, with_vectors=True)
    }


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for item, named in want.items():
        assert got[item].keys() == named.keys(), item
        for key, vec in named.items():
            np.testing.assert_allclose(got[item][key], vec, atol=1e-5, err_msg=f"{item}/{key}")


@pytest.fixture(scope="module")
def clean(trained, tmp_path_factory):
    """Reference states from clean runs: after ingest (bundle) and after reembed (bundle2)."""
    base, catalog = trained
    root = tmp_path_factory.mktemp("crash")
    ingested, reembedded = root / "ingested", root / "reembedded"
    with VectorStore(StoreConfig(path=str(ingested))) as vs:
        ingest(
            catalog,
            bundle=base / "bundle",
            collection="items",
            store=vs,
            features_dir=base / "features",
            device="cpu",
            chunk_size=5,
        )
        ref1 = vectors(vs, "items")
    shutil.copytree(ingested, reembedded)
    with VectorStore(StoreConfig(path=str(reembedded))) as vs:
        report = reembed("items", bundle=base / "bundle2", store=vs, features_dir=base / "features", chunk_size=5)
        assert report.swapped
        ref2 = vectors(vs, "items")
        bundles = {r.name: r.bundle_id for r in version_table(vs, "items")}
    assert len(ref1) == N_ITEMS and len(ref2) == N_ITEMS
    return {
        "base": base,
        "root": root,
        "ingested": ingested,
        "reembedded": reembedded,
        "ref1": ref1,
        "ref2": ref2,
        "bundle1": bundles["items__v1"],
        "bundle2": bundles["items__v2"],
    }


def _timing(clean, op: str, source: Path | None) -> float:
    """How long the operation itself runs in a child (after its imports), to place random kills."""
    store = clean["root"] / f"timing-{op}"
    shutil.rmtree(store, ignore_errors=True)
    if source is not None:
        shutil.copytree(source, store)
    return run_child(op, store, clean["base"])[1]


def _kills(clean, op: str, steps: list[str], source: Path | None, seed: int):
    rng = random.Random(seed)
    duration = _timing(clean, op, source)
    plan = [(step, None) for step in steps] + [(None, rng.uniform(0.0, duration)) for _ in range(RANDOM_KILLS)]
    for n, (step, after) in enumerate(plan):
        store = clean["root"] / f"{op}-{n}"
        shutil.rmtree(store, ignore_errors=True)
        if source is not None:
            shutil.copytree(source, store)
        code, _ = run_child(op, store, clean["base"], crash_at=step, kill_after=after)
        if step is not None:
            assert code == -signal.SIGKILL, f"{op} never reached step {step}"
        KILLS.append(f"{op}@{step or f'{after:.2f}s'}:{'killed' if code else 'finished first'}")
        yield store, step or f"random {after:.2f}s"


def test_ingest_killed_anywhere_then_rerun_equals_a_clean_run(clean):
    base = clean["base"]
    for store_path, where in _kills(clean, "ingest", INGEST_STEPS, None, seed=1):
        with VectorStore(StoreConfig(path=str(store_path))) as vs:
            report = ingest(
                base / "catalog" / "catalog.jsonl",
                bundle=base / "bundle",
                collection="items",
                store=vs,
                features_dir=base / "features",
                device="cpu",
                chunk_size=5,
            )
            assert report.failed == 0, where
            assert vs.resolve_alias("items") == "items__v1", where
            assert vs.count("items") == N_ITEMS, where
            assert_same(vectors(vs, "items"), clean["ref1"])


def test_reembed_killed_anywhere_then_rerun_finishes_that_reembed(clean):
    base = clean["base"]
    for store_path, where in _kills(clean, "reembed", REEMBED_STEPS, clean["ingested"], seed=2):
        with VectorStore(StoreConfig(path=str(store_path))) as vs:
            live_before = vs.resolve_alias("items")
            assert live_before in ("items__v1", "items__v2"), where  # never a missing or partial alias
            assert vs.count(live_before) == N_ITEMS, where
            report = reembed(
                "items", bundle=base / "bundle2", store=vs, features_dir=base / "features", chunk_size=5, keep=0
            )
            assert report.swapped or report.already_live, (where, report.reason)
            rows = version_table(vs, "items")
            # the rerun resumed the interrupted version: no third version was built
            assert [r.name for r in rows] == ["items__v1", "items__v2"], (where, rows)
            live = next(r for r in rows if r.live)
            assert (live.name, live.bundle_id, live.state) == ("items__v2", clean["bundle2"], "ready"), where
            assert vs.count("items") == N_ITEMS, where
            assert_same(vectors(vs, "items"), clean["ref2"])
            # a plain rollback returns to the version that was live before, with the previous bundle
            assert rollback(vs, "items") == "items__v1", where
            assert vs.collection_record("items").bundle_id == clean["bundle1"]
            assert_same(vectors(vs, "items"), clean["ref1"])


def test_rollback_killed_anywhere_leaves_a_complete_alias(clean):
    for store_path, where in _kills(clean, "rollback", ROLLBACK_STEPS, clean["reembedded"], seed=3):
        with VectorStore(StoreConfig(path=str(store_path))) as vs:
            live = vs.resolve_alias("items")
            assert live in ("items__v1", "items__v2"), where
            assert vs.count("items") == N_ITEMS, where
            assert rollback(vs, "items", to=1) == "items__v1", where
            assert_same(vectors(vs, "items"), clean["ref1"])


def test_summary(clean):
    """Not a check of its own: prints what the crash tests above did (run with -s to see it)."""
    print(f"\ncrash kills: {len(KILLS)} — " + ", ".join(KILLS))
