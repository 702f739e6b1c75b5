"""The label bridge: a zero-shot model that needs no pairs, folded into a base bundle's student.

An image from a labelled image encoder (schemas/encoders.py, ``LabelledImageSpec``) carries a label part in the
text encoder's space: the embeddings of the class names its classifier sees. The bridge reads texts and label
parts through one basis, the principal directions of the texts, so an image lands where the texts of its
classes do. It knows nothing of a pool's style, and a pretrained student knows nothing of ImageNet's classes:
:func:`with_label_bridge` puts both in one student, whose cosine is the sum of the two models' cosines (the
bridge's weighted by ``weight``), measured better zero-shot on catalogs outside the pool than either alone
(docs/pretraining.md).
"""

from __future__ import annotations

import numpy as np

from mmalign.plugin.features.paired import PairedFeatures
from mmalign.schemas import Modality

#: The bridge's weight in the base bundle's zero-shot student, chosen on the validation splits of tuxpaint,
#: wesnoth and papirus (none of them in the pool; recall@10, mean of text→image and image→text, seeds 0-2):
#: 0.25 gave 0.389 / 0.255 / 0.086, 0.5 gave 0.425 / 0.260 / 0.074, 1.0 gave 0.439 / 0.257 / 0.058; the student
#: alone 0.287 / 0.235 / 0.080, the bridge alone 0.405 / 0.228 / 0.023 (python -m benchmarks.labelled_images bridge).
BRIDGE_WEIGHT = 0.5
#: Principal directions of the texts that the bridge keeps.
BRIDGE_RANK = 64


def label_bridge_basis(data: PairedFeatures, text_mean: np.ndarray, rank: int = BRIDGE_RANK) -> np.ndarray:
    """(d_text, rank): the principal directions of ``data``'s texts, centred on ``text_mean``."""
    texts = data.features[Modality.TEXT][data.masks[Modality.TEXT]] - text_mean
    rank = min(rank, texts.shape[1], max(1, len(texts) - 1))
    return np.linalg.svd(texts, full_matrices=False)[2][:rank].T.astype(np.float32)


def with_label_bridge(
    student, data: PairedFeatures, label_start: int, weight: float = BRIDGE_WEIGHT, rank: int = BRIDGE_RANK
):
    """A new student whose embedding of an image or a text is ``[its student embedding ; √weight · its bridge
    embedding]``: each part scaled to unit mean norm on ``data``, the bridge's in directions orthogonal to the
    student's (of every modality), so that cosines add. The image's label part starts at column ``label_start``;
    another modality keeps its student embedding. The rank grows by ``rank``, the text directions kept (fewer where
    the projections or the shared space have no room for them)."""
    import torch

    from mmalign.connectors.errors import ConfigError
    from mmalign.plugin.align.student import Student

    if student.hidden:
        raise ConfigError(f"the label bridge joins a linear student; this one has a residual (hidden={student.hidden})")
    projections = [student.projections[m.value] for m in student.modalities]
    shared = torch.cat([p.U.detach() for p in projections], dim=1)
    # no more directions than every projection and the shared space have room for
    rank = min(rank, student.dim - shared.shape[1], *(p.in_dim - p.rank for p in projections))
    if rank < 1:
        raise ConfigError(
            f"no room for the label bridge: the students' {shared.shape[1]} directions fill the {student.dim}-d space"
        )
    basis = torch.from_numpy(label_bridge_basis(data, student.projections[Modality.TEXT.value].mean.numpy(), rank))
    extra = basis.shape[1]
    dims = {m: student.projections[m.value].in_dim for m in student.modalities}
    out = Student(dims, student.dim, student.rank + extra, student.fusion.strategy)
    out.fusion.load_state_dict(student.fusion.state_dict())
    # one set of directions for every modality's bridge part, orthogonal to every modality's student part
    complement = _orthogonal_complement(shared, extra)
    with torch.no_grad():
        for m in student.modalities:
            old, new = student.projections[m.value], out.projections[m.value]
            if new.rank != old.rank + extra:
                raise ConfigError(f"{m.value}: rank {old.rank} + {extra} exceeds the input or shared dimension")
            new.mean.copy_(old.mean)
            new.U.copy_(torch.cat([old.U, complement], dim=1))
            bridge = torch.zeros(old.in_dim, extra)
            if m is Modality.TEXT:
                bridge[:] = basis
            elif m is Modality.IMAGE:
                bridge[label_start:] = basis
            else:  # no bridge: the extra code columns stay zero
                new.V.copy_(torch.cat([old.V, bridge], dim=1))
                continue
            x = torch.from_numpy(np.ascontiguousarray(data.features[m][data.masks[m]], dtype=np.float32))
            student_scale = (old.code(x) @ old.U.T).norm(dim=1).mean().clamp(min=1e-12)
            bridge_scale = ((x - old.mean) @ bridge).norm(dim=1).mean().clamp(min=1e-12)
            new.V.copy_(torch.cat([old.V / student_scale, bridge * (weight**0.5 / bridge_scale)], dim=1))
    return out.eval()


def _orthogonal_complement(u, k: int):
    """(D, k) orthonormal columns orthogonal to the column space of ``u`` (D, r), drawn with a fixed seed."""
    import torch

    q, _ = torch.linalg.qr(u)
    extra = torch.randn(u.shape[0], k, generator=torch.Generator().manual_seed(0))
    extra = extra - q @ (q.T @ extra)
    return torch.linalg.qr(extra)[0]


def padded(student, rank: int):
    """``student`` (linear) at a larger ``rank``, computing exactly what it computes: the extra code columns are
    zero. A bundle's baselines share its student's rank (its config records one rank per modality)."""
    import torch

    from mmalign.plugin.align.student import Student

    dims = {m: student.projections[m.value].in_dim for m in student.modalities}
    out = Student(dims, student.dim, rank, student.fusion.strategy)
    out.fusion.load_state_dict(student.fusion.state_dict())
    with torch.no_grad():
        for m in student.modalities:
            old, new = student.projections[m.value], out.projections[m.value]
            extra = new.rank - old.rank
            new.mean.copy_(old.mean)
            new.V.copy_(torch.cat([old.V, torch.zeros(old.in_dim, extra)], dim=1))
            new.U.copy_(torch.cat([old.U, _orthogonal_complement(old.U.detach(), extra)], dim=1))
    return out.eval()
