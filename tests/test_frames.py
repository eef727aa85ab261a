"""Axis-frame kinematics (jetace.frames) against a slow per-constituent reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from symmetry import pad
from tolerances import AXIS_FRAME, EXACT
from toyjets import toy_jets

from jetace.frames import axis_frame_kinematics


def reference(jet: np.ndarray) -> list[tuple[float, float, float, float, float]]:
    """(r_t, cos theta, sin theta, y, m_T^2) per constituent, one at a time in float64:
    an explicit orthonormal frame (e1, e2, axis), atan2 and the textbook rapidity."""
    axis = jet[:, 1:].sum(axis=0)
    axis = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    out = []
    for e, *p in jet:
        p = np.array(p)
        a, b, z = p @ e1, p @ e2, p @ axis
        rt = math.hypot(a, b)
        out.append((rt, math.cos(math.atan2(b, a)), math.sin(math.atan2(b, a)),
                    0.5 * math.log((e + z) / (e - z)), e * e - z * z))
    return out


def test_kinematics_agree_with_reference_up_to_the_azimuth_origin():
    """r_t, y, m_T^2 agree; the azimuth differs from the reference by one rotation (or
    reflection) per jet, so differences of azimuths agree."""
    jets = toy_jets(5, seed=3, mass=0.3)
    p4, mask = pad(jets)
    kin = axis_frame_kinematics(p4.double(), mask)
    for i, jet in enumerate(jets):
        ref = np.array(reference(jet))
        n = len(jet)
        np.testing.assert_allclose(kin.rt[i, :n], ref[:, 0], **AXIS_FRAME["rt_y"])
        np.testing.assert_allclose(kin.y[i, :n], ref[:, 3], **AXIS_FRAME["rt_y"])
        np.testing.assert_allclose(kin.mt2[i, :n], ref[:, 4], **AXIS_FRAME["mt2"])
        got = torch.complex(kin.cos_theta[i, :n], kin.sin_theta[i, :n]).numpy()
        want = ref[:, 1] + 1j * ref[:, 2]
        rel = got * np.conj(got[0])  # angles relative to the first constituent
        ok = [np.allclose(rel, w * np.conj(w[0]), **AXIS_FRAME["azimuth"])
              for w in (want, np.conj(want))]
        assert any(ok)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_special_cases_are_exact(dtype):
    """A constituent on the axis has azimuth exactly (1, 0); a massless one there gets a
    finite rapidity; zero padding and a constituent below 1e-8 GeV get y = 0; a 1/0
    float mask gives what the bool mask gives."""
    jets = [np.array([[50.0, 0.0, 0.0, 50.0]]),  # massless, on the axis
            np.array([[60.0, 3.0, 4.0, 50.0], [60.0, -3.0, -4.0, 50.0]]),  # axis in between
            np.array([[100.0, 0.0, 0.0, 99.0], [1e-9, 0.0, 5e-10, 5e-10]])]
    p4, mask = pad(jets, width=4)
    p4 = p4.to(dtype)
    kin = axis_frame_kinematics(p4, mask)
    for field in kin:
        assert torch.isfinite(field).all()
    assert kin.cos_theta[0, 0] == 1 and kin.sin_theta[0, 0] == 0 and kin.rt[0, 0] == 0
    assert kin.y[0, 0] > 20  # ln(2 E / MT_FLOOR)
    assert torch.all(kin.y[0, 1:] == 0) and torch.all(kin.y[1, 2:] == 0)
    assert kin.y[2, 1] == 0
    torch.testing.assert_close(kin.y[1, :2], kin.y[1, :2].flip(0), **EXACT)
    again = axis_frame_kinematics(p4, mask.to(dtype))
    for a, b in zip(kin, again, strict=True):
        assert torch.equal(a, b)
