"""Random group elements and an ``assert_invariant`` helper for feature tests.

Transformations act on padded constituents p4 (B, P, 4) ordered (E, px, py, pz).
"""

from __future__ import annotations

import numpy as np
import torch
from tolerances import SCALE_FLOOR

__all__ = ["random_rotation", "rotate", "boost", "boost_along_axis", "jet_rapidity_along_axis",
           "random_axis_rapidity", "random_lorentz",
           "pad", "assert_invariant"]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation matrix (3, 3) (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotate(p4: torch.Tensor, rot: np.ndarray) -> torch.Tensor:
    """Rotate every constituent's three-momentum by ``rot``."""
    r = torch.as_tensor(rot, dtype=p4.dtype, device=p4.device)
    return torch.cat([p4[..., :1], p4[..., 1:] @ r.T], dim=-1)


def boost(p4: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Boost every constituent of jet b by velocity ``beta[b]`` (B, 3), |beta| < 1.

    Written out as the textbook boost matrix acting on (E, p).
    """
    b2 = (beta * beta).sum(-1, keepdim=True)[:, None]  # (B, 1, 1)
    gamma = 1 / torch.sqrt(1 - b2)
    bp = (p4[..., 1:] * beta[:, None]).sum(-1, keepdim=True)  # (B, P, 1)
    e = p4[..., :1]
    e2 = gamma * (e - bp)
    coef = torch.where(b2 > 0, (gamma - 1) / torch.where(b2 > 0, b2, 1.0), 0.0)
    p2 = p4[..., 1:] + (coef * bp - gamma * e) * beta[:, None]
    return torch.cat([e2, p2], dim=-1)


def jet_rapidity_along_axis(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """atanh(|P| / E) of each jet, (B,): a boost along the axis by more than this value
    (see :func:`boost`'s sign) would reverse the jet's direction, and so its axis."""
    tot = (p4 * mask[..., None]).sum(1)
    return torch.atanh(torch.linalg.vector_norm(tot[:, 1:], dim=-1) / tot[:, 0])


def random_axis_rapidity(p4: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator,
                         y_max: float = 3.0) -> torch.Tensor:
    """Random boost rapidities along each jet's axis that keep its direction, (B,)."""
    y_jet = jet_rapidity_along_axis(p4, mask).numpy()
    return torch.tensor(rng.uniform(-y_max, 0.9 * y_jet), dtype=p4.dtype)


def boost_along_axis(p4: torch.Tensor, mask: torch.Tensor, rapidity: torch.Tensor) -> torch.Tensor:
    """Boost each jet along its own axis (summed three-momentum) by ``rapidity`` (B,)."""
    p3 = (p4[..., 1:] * mask[..., None]).sum(1)
    n = p3 / torch.linalg.vector_norm(p3, dim=-1, keepdim=True)
    return boost(p4, torch.tanh(rapidity)[:, None] * n) * mask[..., None]


def random_lorentz(p4: torch.Tensor, rng: np.random.Generator, gamma_max: float = 10.0):
    """A random rotation composed with a boost in a random direction (gamma up to gamma_max)."""
    b = len(p4)
    d = rng.normal(size=(b, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    gamma = rng.uniform(1.0, gamma_max, size=(b, 1))
    beta = torch.as_tensor(d * np.sqrt(1 - 1 / gamma**2), dtype=p4.dtype)
    return boost(rotate(p4, random_rotation(rng)), beta)


def pad(jets: list[np.ndarray], width: int | None = None,
        dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad a list of (n_i, 4) arrays to (B, width, 4) with a (B, width) mask."""
    width = width or max(len(j) for j in jets)
    p4 = np.zeros((len(jets), width, 4))
    mask = np.zeros((len(jets), width), dtype=bool)
    for i, j in enumerate(jets):
        p4[i, : len(j)] = j[:width]
        mask[i, : len(j)] = True
    return torch.tensor(p4, dtype=dtype), torch.tensor(mask)


def assert_invariant(features, p4: torch.Tensor, mask: torch.Tensor, transform,
                     rtol: float, what: str = "",
                     floor: float = SCALE_FLOOR[torch.float64]) -> float:
    """Check features(transform(p4), mask) == features(p4, mask) to ``rtol``.

    The error of each entry is measured against max(|x|, scale) where scale is ``floor``
    times that feature's largest magnitude over the batch: features that vanish by
    symmetry for one jet are compared on the feature's own scale, not on their rounding
    noise (``floor=1`` measures every error on the feature's scale).
    Returns the largest relative error found.
    """
    x = features(p4, mask)
    y = features(transform(p4), mask)
    scale = torch.maximum(x.abs(), floor * x.abs().amax(dim=0, keepdim=True)).clamp_min(1e-300)
    err = float(((y - x).abs() / scale).max())
    assert torch.isfinite(y).all(), f"{what}: non-finite features after the transformation"
    assert err <= rtol, f"{what}: relative change {err:.3g} exceeds {rtol:.3g}"
    return err
