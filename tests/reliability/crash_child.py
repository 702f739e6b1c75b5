"""Child process of the crash tests: runs one operation on a store, to be killed at a step boundary
(``MMALIGN_CRASH_AT``) or at a random moment by the parent. Prints ``ready`` once imports are done.

    python -m tests.reliability.crash_child ingest|reembed|rollback STORE_PATH BASE_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(op: str, store_path: str, base: str) -> int:
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.index.reembed import reembed
    from mmalign.plugin.index.versions import rollback
    from mmalign.schemas import StoreConfig

    base_dir = Path(base)
    store = StoreConfig(path=store_path)
    print("ready", flush=True)
    if op == "ingest":
        ingest(
            base_dir / "catalog" / "catalog.jsonl",
            bundle=base_dir / "bundle",
            collection="items",
            store=store,
            features_dir=base_dir / "features",
            device="cpu",
            chunk_size=5,
        )
    elif op == "reembed":
        reembed(
            "items", bundle=base_dir / "bundle2", store=store, features_dir=base_dir / "features", chunk_size=5, keep=0
        )
    elif op == "rollback":
        from mmalign.connectors.store import VectorStore

        with VectorStore(store) as vs:
            rollback(vs, "items")
    else:
        raise SystemExit(f"unknown operation {op!r}; valid: ingest, reembed, rollback")
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
