"""How user vectors are built from interactions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class UserVectorConfig(BaseModel):
    """u = normalize(Σ_j s_j · 2^(−Δt_j / half_life) · item_j) over a user's interactions j."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    half_life_days: float | None = Field(None, gt=0, description="None: no time decay.")
    negative_below: float | None = Field(
        None, description="Weights below this are negative feedback (e.g. 3 for 1–5 star ratings)."
    )
    negative_strength: float = Field(1.0, ge=0, description="|s_j| of negative feedback.")
    positive: Literal["one", "weight"] = Field("one", description="s_j of positive feedback: 1 or the weight.")

    def strength(self, weight: float) -> float:
        """s_j: negative for a negative weight (explicit dislike) or one below ``negative_below``."""
        if weight < 0 or (self.negative_below is not None and weight < self.negative_below):
            return -self.negative_strength
        return 1.0 if self.positive == "one" else float(weight)


class CollabConfig(BaseModel):
    """Collaborative factors learned from interactions (the ``collab`` vector of items and users)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["als", "svd"] = Field(
        "als", description="als: implicit-feedback ALS; svd: PureSVD (truncated SVD of the binarised matrix)."
    )
    rank: int = Field(64, ge=1, description="Number of factors (the size of the collab vector).")
    reg: float = Field(10.0, ge=0, description="ALS: L2 regularisation of the factors.")
    alpha: float = Field(10.0, ge=0, description="ALS: confidence of a positive is 1 + alpha.")
    iterations: int = Field(15, ge=1, description="ALS: alternating sweeps.")
    seed: int = 0
    content_weight: float = Field(
        0.0, ge=0, description="Hybrid: weight of the content cosine added to the collab score."
    )
    cold_content_weight: float = Field(
        0.0,
        ge=0,
        description="Hybrid: the content weight for items whose collab vector is predicted from content "
        "(no interactions yet: payload collab_source 'predicted').",
    )
    map_reg: float = Field(1.0, ge=0, description="Content → collab ridge, relative to the mean eigenvalue.")
