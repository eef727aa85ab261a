"""Jet frames and numerically stable constituent kinematics.

All functions take padded constituents ``p4`` of shape (B, P, 4), ordered
(E, px, py, pz) in GeV, and a ``mask`` of shape (B, P): bool (True = real
constituent) or 1/0 in p4's dtype. Values at padded positions are defined (finite)
but meaningless; callers zero their contributions with the mask. Device and dtype
follow ``p4``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["AxisKinematics", "jet_axis", "householder_to_z", "axis_frame_kinematics"]

#: Floor for the transverse mass in the rapidity of a massless constituent lying exactly
#: on the jet axis (the only case where m_T = 0 and y is infinite), in GeV.
MT_FLOOR = 1e-8


def jet_axis(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unit vector along the summed constituent three-momentum, shape (B, 3).

    A jet whose three-momenta sum to zero (or that has no constituents) gets e_z.
    """
    return _axis_from_planes(p4[..., 1:].permute(2, 0, 1), mask)


def _axis_from_planes(p3: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`jet_axis` from (3, B, P) component planes (px, py, pz). Each sum is a running
    sum along the jet, in order, so trailing padding (masked) leaves it bit for bit
    unchanged: the axis does not depend on how wide a batch is padded. A leading zero
    column makes the last running sum exist for P = 0 too."""
    masked = p3 * mask.to(p3.dtype)
    masked = torch.cat([masked.new_zeros((*masked.shape[:-1], 1)), masked], dim=-1)
    total = masked.cumsum(dim=-1)[..., -1].T  # (B, 3)
    norm = torch.linalg.vector_norm(total, dim=-1, keepdim=True)
    ez = torch.zeros_like(total)
    ez[:, 2] = 1.0
    return torch.where(norm > 0, total / torch.where(norm > 0, norm, 1.0), ez)


def householder_to_z(px: torch.Tensor, py: torch.Tensor, pz: torch.Tensor,
                     n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply the Householder reflection H that maps unit vector ``n`` to e_z.

    H = I - 2 v v^T / (v.v) with v = n - e_z, and H = I when n = e_z.
    ``px``, ``py``, ``pz``: (B, P) components, ``n``: (B, 3); returns the reflected
    components, each (B, P). The z-component of v is formed without cancellation
    (n_z - 1 = -(n_x^2 + n_y^2) / (1 + n_z) for n_z > 0), so jets almost along e_z are
    reflected accurately. Plain products and sums, no fused multiply-add: torch fuses
    them only in the vectorised part of a loop, so a constituent's rounding would depend
    on its position in the batch (and r_t, formed by cancellation here, is sensitive).
    """
    nx, ny, nz = n.unbind(-1)
    t2 = nx * nx + ny * ny
    vz = torch.where(nz > 0, -t2 / (1 + nz.clamp_min(0)), nz - 1)
    vv = t2 + vz * vz
    scale = torch.where(vv > 0, 2.0 / torch.where(vv > 0, vv, 1.0), 0.0)  # (B,)
    v = [c[:, None] for c in (nx, ny, vz)]
    vp = (px * v[0] + py * v[1] + pz * v[2]) * scale[:, None]  # (B, P)
    return px - vp * v[0], py - vp * v[1], pz - vp * v[2]


class AxisKinematics(NamedTuple):
    """Per-constituent quantities in the jet-axis frame, each of shape (B, P).

    ``rt``: transverse momentum to the axis (GeV, without offset); ``cos_theta``,
    ``sin_theta``: azimuth about the axis; ``y``: rapidity along the axis; ``mt2``:
    squared transverse mass E^2 - z^2 (GeV^2), at least MT_FLOOR^2.
    """

    rt: torch.Tensor
    cos_theta: torch.Tensor
    sin_theta: torch.Tensor
    y: torch.Tensor
    mt2: torch.Tensor


def axis_frame_kinematics(p4: torch.Tensor, mask: torch.Tensor) -> AxisKinematics:
    """Rotate constituents into the jet-axis frame and compute stable kinematics.

    Rapidity is y = sign(z) ln((E + |z|) / m_T) with m_T^2 = r_t^2 + m^2, m^2 = (E - |p|)
    (E + |p|) taken with its sign (slightly spacelike constituents, as float32 storage
    makes of massless ones, stay covariant: m_T^2 = E^2 - z^2), which is exact under
    boosts along the axis up to rounding (no additive epsilon); m_T^2 is floored at
    :data:`MT_FLOOR` squared (a massless constituent exactly on the axis, or one with
    E <= |z|), and a constituent with E + |z| below MT_FLOOR (under 1e-8 GeV, or zero
    padding) gets y = 0. ``mt2`` is the floored value.
    A constituent with r_t = 0 gets azimuth 0.
    """
    # one contiguous (B, P) plane per component: elementwise work on unit strides
    planes = p4.permute(2, 0, 1).contiguous()
    e, px, py, pz = planes.unbind(0)
    pabs = torch.sqrt(px * px + py * py + pz * pz)
    px, py, z = householder_to_z(px, py, pz, _axis_from_planes(planes[1:], mask))
    # branch-free: on CPU a comparison or torch.where costs several arithmetic ops, so
    # the special cases are clamps
    rt2 = px * px + py * py
    rt = torch.sqrt(rt2)  # GeV-scale values: no overflow; exports to ONNX
    tiny = torch.finfo(rt.dtype).tiny
    inv_rt = 1.0 / rt.clamp_min(tiny)
    # r_t = 0 means px = py = 0: cos = tiny / tiny = 1, sin = 0; for r_t >= tiny the
    # added term is 0 and cos = px / r_t exactly
    cos_t = (px + (tiny - rt).clamp_min(0)) * inv_rt
    sin_t = py * inv_rt  # |py| <= r_t (up to underflow): 0 where r_t = 0
    # m^2 keeps its sign (definition 2): float32-stored massless constituents come out
    # slightly spacelike, and r_t^2 + m^2 = E^2 - z^2 is what is invariant under boosts
    # along the axis; only E^2 - z^2 below MT_FLOOR^2 (on the axis, or E <= |z|) is floored
    m2 = (e - pabs) * (e + pabs)
    mt2 = (rt2 + m2).clamp_min(MT_FLOOR * MT_FLOOR)
    mt = torch.sqrt(mt2)
    # E + |z| >= m_T, so the clamp only acts where both are below MT_FLOOR (a constituent
    # below 1e-8 GeV, or zero padding): y = 0 there
    y = torch.sign(z) * torch.log((e + z.abs()).clamp_min(MT_FLOOR) / mt)
    return AxisKinematics(rt, cos_t, sin_t, y, mt2)
