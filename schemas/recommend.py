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
