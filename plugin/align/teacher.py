"""The teacher: full-capacity, joint.

Per modality, a full-rank linear map (initialised from CCA) plus a residual MLP gives a unimodal
embedding e_m; a small transformer over the modality tokens of an item (cross-modal attention,
missing modalities masked out) gives the joint item embedding j. The student is distilled
towards j (one modality at a time) and towards the teacher's in-batch similarity structure.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmalign.schemas import Modality


class ResidualTower(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.linear = nn.Linear(in_dim, out_dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.input_dropout = nn.Dropout(dropout)

    @torch.no_grad()
    def init_linear(self, mean, components) -> None:
        """``components`` (d, k), k ≤ D: the first k output coordinates start as the CCA variates."""
        comps = torch.as_tensor(components, dtype=torch.float32)
        comps = comps / comps.norm(dim=0).mean().clamp(min=1e-12)
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        weight = torch.zeros_like(self.linear.weight)
        weight[: comps.shape[1]] = comps.T
        self.linear.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_dropout(x - self.mean)
        h = self.linear(x)
        return h + self.mlp(x) * h.norm(dim=-1, keepdim=True).detach() / h.shape[-1] ** 0.5


class Teacher(nn.Module):
    def __init__(
        self,
        dims: dict[Modality, int],
        dim: int,
        hidden: int = 1024,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.modalities = [m for m in Modality if m in dims]
        self.dim = dim
        self.towers = nn.ModuleDict({m.value: ResidualTower(dims[m], dim, hidden, dropout) for m in self.modalities})
        self.type_embedding = nn.Parameter(torch.zeros(len(self.modalities), dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.mixer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def unimodal(self, modality: Modality, x: torch.Tensor) -> torch.Tensor:
        """e_m before normalisation."""
        return self.towers[Modality(modality).value](x)

    def embed(self, modality: Modality, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.unimodal(modality, x), dim=-1)

    def joint(self, raw: dict[Modality, torch.Tensor], masks: dict[Modality, torch.Tensor]) -> torch.Tensor:
        """j: attention over the present modality tokens, pooled; starts as the mean of the present e_m."""
        tokens = torch.stack([F.normalize(raw[m], dim=-1) for m in self.modalities], dim=1)
        present = torch.stack([masks[m] for m in self.modalities], dim=1).bool()
        if (~present).all(dim=1).any():
            raise ValueError("an item with no modality has no joint embedding")
        mixed = self.mixer(tokens + self.type_embedding[None], src_key_padding_mask=~present)
        weights = present.float()[..., None]
        pooled = (tokens * weights).sum(1) / weights.sum(1)
        mixed_pooled = (mixed * weights).sum(1) / weights.sum(1)
        return F.normalize(pooled + self.out(mixed_pooled), dim=-1)

    def forward(self, features: dict[Modality, torch.Tensor], masks: dict[Modality, torch.Tensor]):
        raw = {m: self.unimodal(m, features[m]) for m in self.modalities}
        return {m: F.normalize(r, dim=-1) for m, r in raw.items()}, self.joint(raw, masks)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
