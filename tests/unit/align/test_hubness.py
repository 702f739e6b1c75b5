"""Query-side hubness correction (CSLS with a bank of queries): a corpus row that is near every query
stops taking the first place from the right answer."""

import numpy as np

from mmalign.plugin.align.evaluation import hub_scores
from mmalign.plugin.align.metrics import ranks_of_targets


def test_a_hub_loses_first_place_once_its_closeness_to_the_bank_is_subtracted():
    """Targets e_0..e_39; every query e_i + 1.2 u leans towards one direction u, and the corpus holds u
    itself: it outranks every right answer. Other queries of the same kind (the bank, items 40..79)
    show that u is near all of them; CSLS puts each right answer first again."""
    d = 80
    eye = np.eye(d)
    u = np.ones(d) / np.sqrt(d)
    queries = eye[:40] + 1.2 * u
    corpus = np.vstack([eye[:40], u])
    bank = eye[40:] + 1.2 * u
    plain = ranks_of_targets(queries, corpus, np.arange(40))
    corrected = ranks_of_targets(queries, corpus, np.arange(40), 0.5 * hub_scores(bank, corpus, k=5))
    assert (plain == 1).all() and (corrected == 0).all()


def test_hub_scores_are_the_mean_of_the_k_highest_similarities():
    bank = np.eye(3)
    corpus = np.array([[1.0, 1.0, 0.0]])
    np.testing.assert_allclose(hub_scores(bank, corpus, k=2), [np.sqrt(0.5)])


def test_neighbourhood_term_is_zero_only_when_the_embedding_keeps_the_neighbours():
    import torch

    from mmalign.plugin.align.losses import neighbourhood_ce

    torch.manual_seed(0)
    x = torch.randn(16, 8)
    same = neighbourhood_ce(x, torch.nn.functional.normalize(x, dim=-1), 0.1, 0.1)
    shuffled = neighbourhood_ce(x, torch.nn.functional.normalize(x[torch.randperm(16)], dim=-1), 0.1, 0.1)
    assert same < shuffled
