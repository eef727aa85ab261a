"""Property-based tests (hypothesis) of the feature functions over random valid jets.

Jets: 1 to 40 constituents around a random axis, momenta spread over six orders of
magnitude (1 MeV to 3 TeV), massless or massive, spread out or exactly collinear.
Checked: finite features, and invariance under a random rotation in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from symmetry import random_rotation, rotate
from tolerances import FUZZ_MT2_FLOOR, FUZZ_ROTATION

from jetace.features.bip import BIPFeatures

settings.register_profile("jetace-fuzz", derandomize=True, max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow],
                          print_blob=True)
FUZZ = settings.get_profile("jetace-fuzz")


@pytest.fixture(scope="module")
def bip36() -> BIPFeatures:
    return BIPFeatures(3, 6)


@st.composite
def jets(draw, collinear: bool | None = None) -> np.ndarray:
    """One jet as an (n, 4) float64 array (E, px, py, pz) in GeV."""
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    collinear = draw(st.booleans()) if collinear is None else collinear
    massive = draw(st.sampled_from(["massless", "massive", "mixed"]))
    spread = draw(st.sampled_from([1e-4, 1e-2, 0.1, 0.4]))
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    p = 10.0 ** rng.uniform(-3, 3.5, n)  # |p| from 1 MeV to ~3 TeV
    if collinear:
        directions = np.tile(axis, (n, 1))
    else:
        # small random angles around the axis, in a frame spanned by two normals
        u = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(axis, u)
        d = axis + spread * (rng.normal(size=(n, 1)) * u + rng.normal(size=(n, 1)) * v)
        directions = d / np.linalg.norm(d, axis=1, keepdims=True)
    mass = {"massless": np.zeros(n), "massive": 10.0 ** rng.uniform(-3, 1, n),
            "mixed": np.where(rng.random(n) < 0.5, 0.0, 0.14)}[massive]
    p3 = p[:, None] * directions
    energy = np.sqrt(p**2 + mass**2)
    return np.column_stack([energy, p3])


def _padded(jet: np.ndarray, dtype: torch.dtype, width: int = 40):
    p4 = torch.zeros(1, width, 4, dtype=dtype)
    p4[0, : len(jet)] = torch.as_tensor(jet, dtype=dtype)
    mask = torch.zeros(1, width, dtype=torch.bool)
    mask[0, : len(jet)] = True
    return p4, mask


@FUZZ
@given(jet=jets(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_features_finite(bip36, jet, dtype):
    p4, mask = _padded(jet, dtype)
    x = bip36(p4, mask)
    assert x.shape == (1, bip36.num_features) and x.dtype == dtype
    assert torch.isfinite(x).all()


def _order_scale(module: BIPFeatures, x: torch.Tensor, jet: np.ndarray) -> torch.Tensor:
    """Per feature, the magnitude its body order nu sets: S**nu, S the largest single-factor
    feature of the jet plus the rounding floor of the transverse masses.

    The floor: tM = ln(1 + m_T^2) uses the constituent mass^2 = E^2 - |p|^2, which for a
    massless constituent is rounding noise of order 1e-16 E^2 and changes when the
    momentum is rotated; a rotation can thus change S by a few 1e-16 sum E^2 (GeV^2)
    whatever the jet. With the floor 1e-9 sum E^2 and the tolerance 1e-6 below, changes
    up to 1e-15 sum E^2 are accepted there: rounding of the input, not of jetace.
    """
    nu = torch.tensor([len(t) for t in module.terms], dtype=x.dtype)
    single = x[0, nu == 1].abs().max() + FUZZ_MT2_FLOOR * float(np.sum(jet[:, 0] ** 2))
    return single.clamp_min(1e-300) ** nu


@FUZZ
@given(jet=jets(collinear=False), seed=st.integers(0, 2**32 - 1))
def test_rotation_invariance_float64(bip36, jet, seed):
    """float64, random rotation: every feature changes by < 1e-6 of its body order's
    scale. Constituents are kept off the jet axis (their azimuth about the axis is
    undefined when they sit on it)."""
    p4, mask = _padded(jet, torch.float64)
    rot = random_rotation(np.random.default_rng(seed))
    x = bip36(p4, mask)
    y = bip36(rotate(p4, rot), mask)
    assert torch.isfinite(y).all()
    scale = torch.maximum(x.abs(), _order_scale(bip36, x, jet))
    err = float(((y - x).abs() / scale).max())
    assert err < FUZZ_ROTATION, f"relative change {err:.3g}"
