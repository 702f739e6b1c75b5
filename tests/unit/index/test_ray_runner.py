"""The Ray runner of ingest against the in-process runner, on a local Ray cluster (num_cpus=2)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmalign.connectors.dead_letter import read_dead_letters
from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.ingest import ingest
from mmalign.schemas import StoreConfig
from tests.conftest import write_corrupt_png
from tests.ray_cluster import ray_cluster  # noqa: F401 (fixture)
from tests.tiny_catalog import N_ITEMS

ray = pytest.importorskip("ray", reason="the Ray runner needs the [ray] extra (pip install 'mmalign[ray]')")
pytestmark = pytest.mark.usefixtures("ray_cluster")  # one local cluster, 2 CPUs (tests/ray_cluster.py)
ROOT = Path(__file__).resolve().parents[3]


def points(store_path: Path) -> dict[str, tuple[dict, dict[str, np.ndarray]]]:
    """item id -> (payload without the time it was written, named vectors)."""
    with VectorStore(StoreConfig(path=str(store_path))) as vs:
        return {
            p.payload["item_id"]: (
                {k: v for k, v in p.payload.items() if k != "ingested_at"},
                {k: np.asarray(v) for k, v in p.vector.items()},
            )
            for p in vs.scroll("items", with_vectors=True)
        }


def assert_same_points(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for item_id, (payload, vectors) in want.items():
        assert got[item_id][0] == payload, item_id
        assert got[item_id][1].keys() == vectors.keys(), item_id
        for name, vec in vectors.items():
            np.testing.assert_allclose(got[item_id][1][name], vec, atol=1e-5, err_msg=f"{item_id}/{name}")


def run_ingest(trained, tmp: Path, catalog: Path | None = None, **settings):
    base, default_catalog = trained
    return ingest(
        catalog or default_catalog,
        bundle=base / "bundle",
        collection="items",
        store=StoreConfig(path=str(tmp / "store")),
        features_dir=tmp / "features",  # a fresh cache: both runners encode every item
        device="cpu",
        chunk_size=8,
        **settings,
    )


def dead_letters(path) -> set[tuple]:
    return {(r.item_id, r.stage, r.modality, r.reason) for r in read_dead_letters(path)}


def test_the_ray_runner_writes_the_points_of_the_in_process_runner(trained, tmp_path):
    local = run_ingest(trained, tmp_path / "local")
    on_ray = run_ingest(trained, tmp_path / "ray", runner="ray")
    assert (on_ray.ok, on_ray.failed, on_ray.unchanged) == (local.ok, local.failed, 0) == (N_ITEMS, 0, 0)
    assert_same_points(points(tmp_path / "ray" / "store"), points(tmp_path / "local" / "store"))
    assert on_ray.stages["encode_image"].items == N_ITEMS and on_ray.stages["upsert"].items == N_ITEMS
    again = run_ingest(trained, tmp_path / "ray", runner="ray")  # incremental: nothing left to encode
    assert (again.ok, again.unchanged) == (0, N_ITEMS)


def test_a_bad_item_becomes_the_same_dead_letter_on_ray(trained, tmp_path):
    base, catalog = trained
    bad = tmp_path / "catalog"
    shutil.copytree(catalog.parent, bad)
    write_corrupt_png(bad / "img3.png")
    lines = (bad / "catalog.jsonl").read_text().splitlines()
    (bad / "catalog.jsonl").write_text("\n".join([*lines, "{not json", json.dumps({"id": "lonely"})]) + "\n")
    local = run_ingest(trained, tmp_path / "local", catalog=bad / "catalog.jsonl")
    on_ray = run_ingest(trained, tmp_path / "ray", catalog=bad / "catalog.jsonl", runner="ray")
    assert (on_ray.ok, on_ray.failed, on_ray.degraded) == (local.ok, local.failed, local.degraded)
    assert local.degraded == 1  # item3 is stored without its image
    letters = dead_letters(on_ray.dead_letter)
    assert letters == dead_letters(local.dead_letter)
    assert any(item == "item3" and modality == "image" for item, _, modality, _ in letters)
    assert_same_points(points(tmp_path / "ray" / "store"), points(tmp_path / "local" / "store"))


def test_a_rerun_after_the_ray_driver_is_killed_is_exact(trained, tmp_path):
    base, catalog = trained
    clean = run_ingest(trained, tmp_path / "clean")
    assert clean.ok == N_ITEMS
    crashed = tmp_path / "crashed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MMALIGN_CRASH_AT": "ingest.chunk_queued:2"}
    script = (
        "import sys; from mmalign.plugin.index.ingest import ingest; from mmalign.schemas import StoreConfig;"
        "ingest(sys.argv[1], bundle=sys.argv[2], collection='items', store=StoreConfig(path=sys.argv[3]),"
        "features_dir=sys.argv[4], device='cpu', chunk_size=8, runner='ray', ray_address=sys.argv[5])"
    )
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script,
            str(catalog),
            str(base / "bundle"),
            str(crashed / "store"),
            str(crashed / "features"),
            ray.get_runtime_context().gcs_address,  # the child joins this cluster: killing it leaves the cluster
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # anything it started shares its process group: ended with it below
    )
    try:
        _, err = child.communicate(timeout=240)
    finally:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert child.returncode == -signal.SIGKILL, err.decode()[-2000:]
    with VectorStore(StoreConfig(path=str(crashed / "store"))) as vs:
        assert vs.count("items") < N_ITEMS  # killed before the end
    rerun = run_ingest(trained, crashed, runner="ray")
    assert rerun.failed == 0 and rerun.ok + rerun.unchanged == N_ITEMS, rerun
    assert_same_points(points(crashed / "store"), points(tmp_path / "clean" / "store"))
