"""Closed-form linear maps fitted on paired features: per-modality PCA and regularised CCA.

Both return, per modality, ``mean`` (d,) and ``components`` (d, r) such that
``(x - mean) @ components`` are the r coordinates; they initialise the low-rank projections.
"""

from __future__ import annotations

import numpy as np


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(c)
    vals = np.clip(vals, 1e-12, None)
    return (vecs / np.sqrt(vals)) @ vecs.T


def pca(x: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``rank`` principal directions; returns (mean, components (d, r), explained std (r,))."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    r = min(rank, vt.shape[0])
    comps = np.zeros((x.shape[1], rank))
    comps[:, :r] = vt[:r].T
    std = np.zeros(rank)
    std[:r] = s[:r] / np.sqrt(max(len(x) - 1, 1))
    return mean.astype(np.float32), comps.astype(np.float32), std.astype(np.float32)


def cca(
    x: np.ndarray, y: np.ndarray, rank: int, reg: float = 0.1
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Regularised CCA of paired rows of ``x`` and ``y``.

    ``reg`` is relative: each covariance gets ``reg * mean eigenvalue`` on its diagonal, so one
    value works across feature scales. Returns ((mean_x, W_x), (mean_y, W_y), correlations) with
    W (d, rank); canonical variates have unit variance.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"CCA needs at least 2 paired rows, got {len(x)} and {len(y)}")
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    n = len(x) - 1
    cxx, cyy, cxy = xc.T @ xc / n, yc.T @ yc / n, xc.T @ yc / n
    cxx += np.eye(len(cxx)) * reg * np.trace(cxx) / len(cxx)
    cyy += np.eye(len(cyy)) * reg * np.trace(cyy) / len(cyy)
    wx_half, wy_half = _inv_sqrt(cxx), _inv_sqrt(cyy)
    u, s, vt = np.linalg.svd(wx_half @ cxy @ wy_half, full_matrices=False)
    r = min(rank, len(s))
    wx = np.zeros((x.shape[1], rank))
    wy = np.zeros((y.shape[1], rank))
    wx[:, :r] = wx_half @ u[:, :r]
    wy[:, :r] = wy_half @ vt[:r].T
    corr = np.zeros(rank)
    corr[:r] = s[:r]
    return (
        (mx.astype(np.float32), wx.astype(np.float32)),
        (my.astype(np.float32), wy.astype(np.float32)),
        corr.astype(np.float32),
    )


def ridge_to_targets(x: np.ndarray, targets: np.ndarray, reg: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares map of ``x`` onto given canonical coordinates (a third modality joins a CCA space)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    mean = x.mean(0)
    xc = x - mean
    cxx = xc.T @ xc
    cxx += np.eye(len(cxx)) * reg * np.trace(cxx) / len(cxx)
    w = np.linalg.solve(cxx, xc.T @ (t - t.mean(0)))
    return mean.astype(np.float32), w.astype(np.float32)
