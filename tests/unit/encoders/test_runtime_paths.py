"""`--runtime` reaches features, ingest, search and serve: each runs the bundle's encoders on the runtime asked for."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mmalign.connectors.store import VectorStore
from mmalign.plugin.cli import main
from mmalign.schemas import Modality, StoreConfig

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'mmalign[onnx]')")


@pytest.fixture(autouse=True)
def exports_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MMALIGN_ONNX_DIR", str(tmp_path / "onnx-default"))


def _text_folders(features) -> list[str]:
    return sorted(p.name.split("--")[0] for p in (features / "text").iterdir() if p.is_dir())


@pytest.mark.parametrize("runtime,folder", [("torch", "tiny-bert"), ("onnx", "tiny-bert@onnx-fp32")])
def test_features_caches_each_runtime_under_its_own_encoder_id(trained, tmp_path, runtime, folder):
    _, catalog = trained
    out = tmp_path / "features"
    args = ["features", str(catalog), "--out", str(out), "--preset", "tiny", "--modality", "text"]
    result = CliRunner().invoke(main, [*args, "--device", "cpu", "--runtime", runtime, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["modalities"]["text"]["encoder_id"].startswith(folder + ":")
    assert _text_folders(out) == [folder]
    assert (out / "onnx").is_dir() == (runtime == "onnx")  # the export sits next to the features it made


def test_an_unknown_runtime_is_refused_naming_the_valid_ones(trained, tmp_path):
    _, catalog = trained
    result = CliRunner().invoke(main, ["features", str(catalog), "--out", str(tmp_path), "--runtime", "tpu"])
    assert result.exit_code == 2 and "'auto', 'torch', 'onnx'" in result.output


def test_ingest_and_search_run_the_bundle_on_the_runtime_asked_for(trained, tmp_path):
    from mmalign.plugin.encoders.onnx_runtime import OnnxEncoder
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.index.search import Searcher, search_query

    base, catalog = trained
    with VectorStore(StoreConfig(path=":memory:")) as store:
        hits, vectors = {}, {}
        for runtime in ("torch", "onnx"):
            features = tmp_path / f"features-{runtime}"
            report = ingest(
                catalog,
                bundle=base / "bundle",
                collection=f"items_{runtime}",
                store=store,
                features_dir=features,
                device="cpu",
                runtime=runtime,
            )
            assert report.ok > 0 and report.failed == 0
            assert _text_folders(features) == ["tiny-bert" if runtime == "torch" else "tiny-bert@onnx-fp32"]
            with Searcher(f"items_{runtime}", store=store, device="cpu", runtime=runtime) as searcher:
                encoder = searcher.encoder.encoder(Modality.TEXT)
                assert isinstance(encoder, OnnxEncoder) == (runtime == "onnx")
                vectors[runtime] = searcher.encoder.embed(Modality.TEXT, "a red frog").vector
                hits[runtime] = searcher.run(search_query(text=["a red frog"], using="text", k=5, mode="dense")).hits
    # the same bundle on either runtime: the same query vector, the same neighbours and scores (dense: hybrid
    # scores are fused ranks, and BM25 ties at the prefetch cut-off may come in either order)
    np.testing.assert_allclose(vectors["torch"], vectors["onnx"], atol=1e-4)
    assert [h.id for h in hits["torch"]] == [h.id for h in hits["onnx"]]
    np.testing.assert_allclose([h.score for h in hits["torch"]], [h.score for h in hits["onnx"]], atol=1e-4)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_the_service_encodes_queries_on_its_runtime(trained, runtime):
    from mmalign.plugin.encoders.onnx_runtime import OnnxEncoder
    from mmalign.plugin.index.ingest import ingest
    from mmalign.plugin.serve.config import ServeConfig
    from mmalign.plugin.serve.service import Service

    base, catalog = trained
    with VectorStore(StoreConfig(path=":memory:")) as store:
        ingest(catalog, bundle=base / "bundle", collection="items", store=store, features_dir=base / "features")
        config = ServeConfig(collection="items", store=StoreConfig(path=":memory:"), device="cpu", runtime=runtime)
        service = Service(config, store=store, encoder_pool={})
        try:
            generation = service.load()
            encoder = generation.searcher.encoder.encoder(Modality.TEXT)
            assert isinstance(encoder, OnnxEncoder) == (runtime == "onnx")
        finally:
            service.close()
