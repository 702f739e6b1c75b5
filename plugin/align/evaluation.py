"""Cross-modal retrieval evaluation of any model that embeds one modality at a time and fuses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from mmalign.connectors.errors import DataError
from mmalign.plugin.align.metrics import ranks_of_targets, retrieval_metrics
from mmalign.plugin.features.paired import PairedFeatures
from mmalign.schemas import Modality
from mmalign.schemas.encoders import EncoderSpec

FUSED = "fused"


class Embedder(Protocol):
    modalities: list[Modality]

    def embed(self, modality: Modality, x: np.ndarray) -> np.ndarray: ...

    def fuse(self, data: PairedFeatures) -> np.ndarray: ...


def evaluate_embedder(
    name: str,
    model: Embedder,
    data: PairedFeatures,
    *,
    with_fused: bool = True,
    cross_modal: bool = True,
    hubness_bank: PairedFeatures | None = None,
    hubness_k: int = 10,
) -> list[dict]:
    """One row per (query modality -> target) with recall@1/5/10, MRR and the number of queries;
    ``cross_modal=False``: the ``-> fused`` rows only.

    A query is an item that has both the query and the target modality; its relevant result is
    the same item; the corpus is every evaluated item that has the target modality.

    ``hubness_bank`` (e.g. the catalog's training items): query-side hubness correction (CSLS): a
    corpus row's score is lowered by half the mean of its ``hubness_k`` highest similarities to the
    bank's inputs of the query modality, so that a "hub" that is near every query stops winning.
    """
    modalities = [m for m in model.modalities if m in data.masks and data.masks[m].any()]
    embedded = {m: model.embed(m, data.features[m][data.masks[m]]) for m in modalities}
    rows_of = {m: np.flatnonzero(data.masks[m]) for m in modalities}
    targets: list[tuple[str, np.ndarray, np.ndarray]] = (
        [(m.value, embedded[m], rows_of[m]) for m in modalities] if cross_modal else []
    )
    if with_fused:
        targets.append((FUSED, model.fuse(data), np.arange(len(data))))
    results = []
    for query in modalities:
        for target_name, corpus, corpus_rows in targets:
            if target_name == query.value:
                continue
            position = {int(r): n for n, r in enumerate(corpus_rows)}
            q_rows = rows_of[query]
            keep = [n for n, r in enumerate(q_rows) if int(r) in position]
            if not keep:
                continue
            target_index = np.array([position[int(q_rows[n])] for n in keep])
            penalty = None
            if hubness_bank is not None and hubness_bank.masks[query].any():
                penalty = 0.5 * hub_scores(
                    model.embed(query, hubness_bank.features[query][hubness_bank.masks[query]]), corpus, hubness_k
                )
            try:
                metrics = retrieval_metrics(ranks_of_targets(embedded[query][keep], corpus, target_index, penalty))
            except DataError as exc:
                raise DataError(f"evaluating {name!r} {query.value} -> {target_name}: {exc}") from exc
            results.append({"model": name, "query": query.value, "target": target_name, **metrics})
    return results


def hub_scores(bank: np.ndarray, corpus: np.ndarray, k: int = 10) -> np.ndarray:
    """Per corpus row, the mean of its ``k`` highest cosine similarities to the ``bank`` rows."""
    b = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
    c = corpus / np.maximum(np.linalg.norm(corpus, axis=1, keepdims=True), 1e-12)
    sims = c @ b.T
    k = max(1, min(k, sims.shape[1]))
    return np.sort(np.partition(sims, -k, axis=1)[:, -k:], axis=1).mean(axis=1)


def primary_metric(results: list[dict]) -> float:
    """What training selects on: mean of recall@1/5/10 over the cross-modal pairs (fused targets
    excluded), weighted by their number of queries. Averaging three cut-offs and weighting by
    queries makes the choice on a small validation split less noisy than recall@10 alone."""
    rows = [r for r in results if r["target"] != FUSED and r["n_queries"] > 0]
    if not rows:
        return 0.0
    scores = np.array([(r["recall@1"] + r["recall@5"] + r["recall@10"]) / 3 for r in rows])
    weights = np.array([r["n_queries"] for r in rows], dtype=np.float64)
    return float((scores * weights).sum() / weights.sum())


class RawEmbedder:
    """Raw encoder features, where two modalities' encoders share one space (e.g. CLIP image/text)."""

    def __init__(self, modalities):
        self.modalities = list(modalities)

    def embed(self, modality, x):
        return np.asarray(x, dtype=np.float32)

    def fuse(self, data):
        total = sum(
            np.where(
                data.masks[m][:, None],
                data.features[m] / np.maximum(np.linalg.norm(data.features[m], axis=1, keepdims=True), 1e-12),
                0,
            )
            for m in self.modalities
        )
        return total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)


def shared_space_modalities(specs: Mapping[Modality, EncoderSpec]) -> list[Modality]:
    """Modalities whose encoders are two towers of one open_clip model (same arch and weights)."""
    clip = [(m, s) for m, s in specs.items() if s.kind in ("open_clip_image", "open_clip_text")]
    if len(clip) == 2 and clip[0][1].arch == clip[1][1].arch and clip[0][1].weights == clip[1][1].weights:
        return [m for m, _ in clip]
    return []
