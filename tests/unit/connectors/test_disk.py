"""Disk space (issue #23): the estimate of a write is an upper bound, a write that cannot fit is refused
with one clear message, and a command stopped by SIGBUS (a full disk under memory-mapped files) ends
with one error line instead of "Bus error"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmalign.connectors import disk
from mmalign.connectors.disk import DiskSpaceError, ensure_space, estimate_write_bytes, supervised
from mmalign.connectors.store import VectorStore
from mmalign.plugin.index.ingest import ingest
from mmalign.schemas import StoreConfig
from tests.tiny_catalog import N_ITEMS

ROOT = Path(__file__).resolve().parents[3]


def test_the_estimate_is_an_upper_bound_of_what_an_ingest_leaves_on_disk(trained, tmp_path):
    base, catalog = trained
    with VectorStore(StoreConfig(path=str(tmp_path / "store"))) as vs:
        ingest(catalog, bundle=base / "bundle", collection="items", store=vs, features_dir=base / "features")
        used = vs.disk_bytes()
    assert 0 < used <= estimate_write_bytes(N_ITEMS, 8) + disk.COLLECTION_BYTES


def test_a_write_that_does_not_fit_is_refused_naming_the_need_the_margin_and_the_free_space(tmp_path, monkeypatch):
    free, _ = disk.free_bytes(tmp_path)
    monkeypatch.setenv(disk.ENV_MARGIN, "1")
    ensure_space(tmp_path, free // 2, "a small write")  # fits
    with pytest.raises(DiskSpaceError, match=r"not enough disk space for a huge write: it writes about .* MiB and"):
        ensure_space(tmp_path / "not-yet" / "there", free + (1 << 30), "a huge write")
    monkeypatch.setenv(disk.ENV_CHECK, "0")
    ensure_space(tmp_path, free + (1 << 30), "a huge write")  # the check is off


def test_the_margin_comes_from_the_environment_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv(disk.ENV_MARGIN, "0.5")
    assert disk.margin_bytes() == 1 << 19
    monkeypatch.setenv(disk.ENV_MARGIN, "lots")
    with pytest.raises(ValueError, match="MMALIGN_DISK_MARGIN_MB='lots' is not a number"):
        disk.margin_bytes()


def _supervise(body: str, *store_paths: str) -> subprocess.CompletedProcess:
    code = (
        "import os, signal, sys\n"
        "from mmalign.connectors.disk import supervised\n"
        f"supervised(lambda: ({body}), {list(store_paths)!r})\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


def test_a_child_stopped_by_sigbus_is_one_error_line_and_status_1(tmp_path):
    done = _supervise("os.kill(os.getpid(), signal.SIGBUS)", str(tmp_path / "store"))
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("Error: ") and "SIGBUS" in line and str(tmp_path) in line and "Bus error" not in line


def test_any_other_end_of_the_child_is_passed_on_as_it_is():
    assert _supervise("sys.exit(3)").returncode == 3
    assert _supervise("print('hello')").stdout == "hello\n"
    assert _supervise("os.kill(os.getpid(), signal.SIGKILL)").returncode == -9


def _supervised_sleeper(tmp_path):
    """A supervised command (no terminal) that writes its pid and sleeps; returns (supervisor, child pid)."""
    # A shell's background job (`pytest &`) starts with SIGINT ignored, and Python then keeps it ignored in
    # both processes: the command is started as from a terminal, where SIGINT raises KeyboardInterrupt.
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from mmalign.connectors.disk import supervised\n"
        f"supervised(lambda: (open({str(tmp_path / 'child')!r}, 'w').write(str(os.getpid())), time.sleep(60)))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (tmp_path / "child").exists() or not (tmp_path / "child").read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    return proc, int((tmp_path / "child").read_text())


def _gone(pid: int, within_s: float = 20) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_sigint_sent_to_the_supervisor_alone_reaches_the_command(tmp_path):
    """``kill -INT PID`` or a process manager interrupts the supervisor only (no terminal sends it to the
    group): it is passed on, so that the command stops instead of running on as an orphan."""
    proc, child = _supervised_sleeper(tmp_path)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) != 0
    assert _gone(child)


def test_the_command_ends_when_its_supervisor_is_killed(tmp_path):
    """SIGKILL cannot be passed on: the child asked the kernel for SIGTERM when its parent dies."""
    proc, child = _supervised_sleeper(tmp_path)
    proc.kill()
    proc.wait(30)
    assert _gone(child)


def test_a_test_runners_captured_streams_run_the_command_in_this_process(monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert supervised(lambda: 42) == 42


def test_the_cli_finds_the_store_folders_its_command_line_names_for_the_sigbus_line():
    from mmalign.plugin.cli import store_paths

    argv = ["store", "push", "--qdrant-path", "a", "--collection", "c", "--to-path=b"]
    assert store_paths(argv) == ["a", "b"]
    assert store_paths(["search", "--text", "x"]) == []


def test_the_sigbus_line_names_what_to_call_in_the_library_and_on_the_command_line(tmp_path):
    line = disk.sigbus_message([str(tmp_path)])
    assert str(tmp_path) in line and "verify_collection; CLI: `mmalign store verify" in line
