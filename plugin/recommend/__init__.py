"""Recommendation: user vectors, the recommender, the co-occurrence space, evaluation and baselines."""
