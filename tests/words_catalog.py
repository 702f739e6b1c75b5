"""A small catalog whose item texts differ in their words (the tiny catalog's texts all share twelve words),
for lexical and hybrid search through the library, the service and the page."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import write_png

TEXTS = [
    "A red fire truck with a ladder.",
    "A fire hydrant on a street.",
    "A blue umbrella in the rain.",
    "A pair of sunglasses.",
    "A soccer ball on green grass.",
    "A slice of pizza with cheese.",
    "A dog face, smiling.",
    "A Gibson guitar, model LP-100.",
    "A green frog on a leaf.",
    "A small house with a red roof.",
    "An old steam locomotive.",
    "A bowl of tomato soup.",
]
#: The item whose text holds the rare exact name "LP-100".
RARE = "w7"


def write_words_catalog(root: Path) -> Path:
    """Items w0..w11 with an image each, metadata group even/odd; returns the catalog file."""
    lines = []
    for i, text in enumerate(TEXTS):
        write_png(root / f"img{i}.png", (20 * i, 255 - 20 * i, 90), size=(24, 24))
        group = "even" if i % 2 == 0 else "odd"
        lines.append(json.dumps({"id": f"w{i}", "text": text, "image": f"img{i}.png", "metadata": {"group": group}}))
    (root / "words.jsonl").write_text("\n".join(lines) + "\n")
    return root / "words.jsonl"


@contextmanager
def serve_words_collection(trained, root: Path) -> Iterator:
    """The words catalog ingested as ``words`` (the tiny bundle) into an in-memory store, served over HTTP."""
    from mmalign.connectors.store import VectorStore
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.serve.app import BackgroundServer, create_app
    from mmalign.plugin.serve.config import ServeConfig
    from mmalign.plugin.serve.service import Service
    from mmalign.schemas import StoreConfig

    base, _ = trained
    catalog = write_words_catalog(root)
    with VectorStore(StoreConfig(path=":memory:")) as store:
        ingest(catalog, bundle=base / "bundle", collection="words", store=store, features_dir=base / "features")
        service = Service(ServeConfig(collection="words", device="cpu", media_root=str(root)), store=store)
        service.load()
        with BackgroundServer(create_app(service, watch_interval_s=0)) as server:
            yield server, store
