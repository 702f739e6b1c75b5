"""A tiny tri-modal catalog and two bundles trained on it, shared by the index and reliability tests."""

import json

import numpy as np
import pytest

from tests.conftest import write_png, write_wav

N_ITEMS = 36
WORDS = ["red", "green", "blue", "big", "small", "frog", "cat", "dog", "car", "tree", "house", "coin"]


def make_catalog(root, n=N_ITEMS, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        write_png(root / f"img{i}.png", color, size=(24, 24))
        item = {
            "id": f"item{i}",
            "text": "a " + " ".join(rng.choice(WORDS, 3)),
            "image": f"img{i}.png",
            "metadata": {"group": "even" if i % 2 == 0 else "odd", "n": i},
        }
        if i % 3 == 0:
            write_wav(root / f"snd{i}.wav", freq=200.0 + 40 * i, seconds=0.3, rate=8000)
            item["audio"] = f"snd{i}.wav"
        lines.append(json.dumps(item))
    (root / "catalog.jsonl").write_text("\n".join(lines) + "\n")
    return root / "catalog.jsonl"


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_preset):
    """A tiny catalog, its features and a bundle trained on them (once per module)."""
    from mmalign.plugin.workflows.train import train_bundle
    from mmalign.schemas import TrainConfig

    base = tmp_path_factory.mktemp("tiny-catalog")
    catalog = make_catalog(base / "catalog")
    cfg = TrainConfig(dim=8, rank=4, epochs=2, teacher_epochs=2, teacher_hidden=16, teacher_layers=1)
    train_bundle(catalog, base / "bundle", preset=tiny_preset, features_dir=base / "features", cfg=cfg, device="cpu")
    train_bundle(
        catalog,
        base / "bundle2",
        preset=tiny_preset,
        features_dir=base / "features",
        cfg=cfg.model_copy(update={"seed": 1}),
        device="cpu",
    )
    return base, catalog
