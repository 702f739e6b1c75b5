"""Re-embed the quickstart collection with another bundle, list versions, roll back (from Python).

    mmalign train mmalign-data/quickstart/tuxpaint.jsonl --media-root /usr/share/tuxpaint/stamps \
        --out mmalign-data/bundles/seed1 --seed 1
    python examples/reembed_library.py mmalign-data/bundles/seed1
"""

from __future__ import annotations

import sys

from mmalign.connectors.store import VectorStore
from mmalign.plugin import reembed
from mmalign.plugin.index.versions import rollback, version_table
from mmalign.schemas import StoreConfig


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    with VectorStore(StoreConfig(path="mmalign-data/qdrant")) as store:
        report = reembed("stamps", bundle=argv[0], store=store, features_dir="mmalign-data/features")
        print(
            f"{report.old_version} -> {report.new_version} ({report.mode}, {report.seconds:.1f}s): "
            f"{'swapped' if report.swapped else 'NOT swapped: ' + str(report.reason)}"
        )
        for row in version_table(store, "stamps"):
            print(f"  {'*' if row.live else ' '} {row.name} {row.points} points bundle {row.bundle_id}")
        if report.swapped:
            print("rolled back to", rollback(store, "stamps"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
