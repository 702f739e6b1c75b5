"""The student: one low-rank projection per modality into the shared space, plus fusion.

f_m(x) = normalize(U_m (V_mᵀ (x − μ_m) + g_m(x))), V_m ∈ R^{d_m×r}, U_m ∈ R^{D×r}: r(d_m + D)
parameters instead of d_m·D. g_m is an optional small non-linear residual on the rank-r code
(a bottleneck MLP d_m → h → r whose output layer starts at zero; ``hidden`` = h, 0 = none), so
the student starts as exactly the linear low-rank map. This is what ingest and queries run, one
modality at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmalign.connectors.errors import ConfigError
from mmalign.plugin.align.closed_form import LinearFit
from mmalign.schemas import Modality, TrainConfig

FUSION_STRATEGIES = ("weighted", "concat")


class CodeResidual(nn.Module):
    """g(x) = B · GELU(A (x − μ) / s + a): a bottleneck MLP from the centred features to the rank-r
    code. ``s`` (a buffer) is the RMS of the centred training features, so A's init does not depend
    on the encoder's scale; B starts at zero, so the projection starts as its linear part."""

    def __init__(self, in_dim: int, rank: int, hidden: int):
        super().__init__()
        self.register_buffer("input_scale", torch.ones(()))
        self.A = nn.Linear(in_dim, hidden)
        self.B = nn.Linear(hidden, rank, bias=False)
        nn.init.zeros_(self.B.weight)

    def forward(self, centred: torch.Tensor) -> torch.Tensor:
        return self.B(F.gelu(self.A(centred / self.input_scale)))


class LowRankProjection(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, rank: int, hidden: int = 0):
        super().__init__()
        if rank < 1 or rank > min(in_dim, out_dim):
            raise ConfigError(f"rank must be in [1, min(d={in_dim}, D={out_dim})], got {rank}")
        if hidden < 0:
            raise ConfigError(f"hidden must be >= 0 (0: no residual), got {hidden}")
        self.in_dim, self.out_dim, self.rank, self.hidden = in_dim, out_dim, rank, hidden
        self.register_buffer("mean", torch.zeros(in_dim))
        self.V = nn.Parameter(torch.randn(in_dim, rank) / in_dim**0.5)
        self.U = nn.Parameter(torch.linalg.qr(torch.randn(out_dim, rank))[0])
        # absent when hidden == 0, so the state dict of a linear student is what it always was
        self.residual = CodeResidual(in_dim, rank, hidden) if hidden else None

    @torch.no_grad()
    def init_from(self, mean, components, scale=None) -> None:
        """Set μ and V from a closed-form fit (``components`` (d, r)); U embeds the r coordinates."""
        comps = torch.as_tensor(components, dtype=torch.float32)
        if scale is not None:
            comps = comps * torch.as_tensor(scale, dtype=torch.float32)
        # Keep the map's overall scale O(1) so training starts at a sensible step size.
        norm = comps.norm(dim=0).mean().clamp(min=1e-12)
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.V.copy_(comps / norm)
        eye = torch.zeros(self.out_dim, self.rank)
        eye[: self.rank, : self.rank] = torch.eye(self.rank)
        self.U.copy_(eye)

    @torch.no_grad()
    def set_input_scale(self, x) -> None:
        """Scale of the residual's input: the RMS norm of centred features ``x`` (n, d)."""
        if self.residual is not None:
            centred = torch.as_tensor(x, dtype=torch.float32) - self.mean
            self.residual.input_scale.copy_(centred.pow(2).sum(1).mean().sqrt().clamp(min=1e-6))

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """The rank-r code Vᵀ(x − μ) (+ the residual)."""
        centred = x - self.mean
        z = centred @ self.V
        if self.residual is not None:
            z = z + self.residual(centred)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.code(x) @ self.U.T, dim=-1)


class Fusion(nn.Module):
    """``weighted``: normalize(Σ_present w_m f_m), softmax weights renormalised over present modalities.
    ``concat``: normalize([w_m f_m]_m) with zeros for absent modalities (size D·M, not D)."""

    def __init__(self, modalities: list[Modality], strategy: str = "weighted", learn_weights: bool = True):
        super().__init__()
        if strategy not in FUSION_STRATEGIES:
            raise ConfigError(f"unknown fusion {strategy!r}; valid: {list(FUSION_STRATEGIES)}")
        self.modalities = list(modalities)
        self.strategy = strategy
        self.logits = nn.Parameter(torch.zeros(len(modalities)), requires_grad=learn_weights)

    def weights(self) -> dict[Modality, float]:
        w = torch.softmax(self.logits.detach(), dim=0)
        return {m: float(w[i]) for i, m in enumerate(self.modalities)}

    def forward(self, embeddings: dict[Modality, torch.Tensor], masks: dict[Modality, torch.Tensor]) -> torch.Tensor:
        present = torch.stack([masks[m].float() for m in self.modalities], dim=1)  # (n, M)
        if (present.sum(1) == 0).any():
            raise ValueError("an item with no modality cannot be fused")
        weights = torch.softmax(self.logits, dim=0)[None, :] * present
        weights = weights / weights.sum(1, keepdim=True)
        stacked = torch.stack([embeddings[m] for m in self.modalities], dim=1)  # (n, M, D)
        stacked = stacked * present[..., None]
        if self.strategy == "concat":
            return F.normalize((stacked * weights[..., None].sqrt()).flatten(1), dim=-1)
        return F.normalize((stacked * weights[..., None]).sum(1), dim=-1)


class Student(nn.Module):
    def __init__(self, dims: dict[Modality, int], dim: int, rank: int, fusion: str = "weighted", hidden: int = 0):
        super().__init__()
        self.modalities = [m for m in Modality if m in dims]
        self.dim, self.rank, self.hidden = dim, rank, hidden
        self.projections = nn.ModuleDict(
            {m.value: LowRankProjection(dims[m], dim, min(rank, dims[m]), hidden) for m in self.modalities}
        )
        self.fusion = Fusion(self.modalities, fusion)

    def embed(self, modality: Modality, x: torch.Tensor) -> torch.Tensor:
        return self.projections[Modality(modality).value](x)

    def forward(self, features: dict[Modality, torch.Tensor], masks: dict[Modality, torch.Tensor]):
        embeddings = {m: self.embed(m, features[m]) for m in self.modalities}
        return embeddings, self.fusion(embeddings, masks)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_student(dims: dict[Modality, int], cfg: TrainConfig, fit: LinearFit | None, hidden: int = 0) -> Student:
    """A student of ``cfg``'s shape, initialised from a closed-form fit (or randomly with None).
    ``hidden`` > 0 adds the non-linear code residual (the svd/cca baselines never have one)."""
    student = Student(dims, cfg.dim, cfg.rank, cfg.fusion, hidden)
    if fit is not None:
        for m in student.modalities:
            proj = student.projections[m.value]
            comps = fit.components[m][:, : proj.rank]
            proj.init_from(fit.mean[m], comps, fit.scale[m][: proj.rank])
    return student
