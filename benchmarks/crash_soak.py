"""Crash soak: the crash-consistency tests with many random kills per operation.

    python -m benchmarks.crash_soak --kills 20

Runs ``tests/reliability/test_crasher.py`` with ``MMALIGN_CRASH_RANDOM=N`` (the suite's default is 3)
and prints its summary line (kills done, per operation and step).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="random kills per operation (ingest, reembed, rollback)")
    args = parser.parse_args(argv)
    env = {**os.environ, "MMALIGN_CRASH_RANDOM": str(args.kills)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        "tests/reliability/test_crasher.py",
    ]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
