"""The reproducibility contract (jetace.reproducibility), tested as written.

* A jet's features do not depend on the other jets of its batch, whatever they hold
  (extreme, tiny or non-finite momenta), in the padded and the packed path.
* Features agree to the contract's tolerance across CPU instruction sets: a subprocess
  computes them under another ``ATEN_CPU_CAPABILITY`` (AVX2 on an AVX-512 machine, the
  scalar fallback on an AVX2 one).
* Every test marked ``reproducibility`` (batch composition, padding, sub-batches,
  workers, dask) passes a second time under that other capability.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from symmetry import pad
from tolerances import assert_reproduced
from toyjets import toy_jets

import jetace.features.bip as bip
from jetace import BIPFeatures, LorentzACEFeatures

TESTS = Path(__file__).parent
SECOND_PASS = "JETACE_TEST_SECOND_PASS"


def _other_capability() -> str:
    """Another instruction set torch can run on this CPU: avx2 under AVX-512, else the
    scalar ``default`` kernels."""
    return "avx2" if torch.backends.cpu.get_cpu_capability() == "AVX512" else "default"


def _capability_env(capability: str) -> dict[str, str]:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, SECOND_PASS: "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


# ---------------------------------------------------------------------- neighbours

EXTREMES = {"huge": 1e20, "tiny": 1e-30, "nan": float("nan"), "inf": float("inf")}


@pytest.mark.reproducibility
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value", list(EXTREMES))
@pytest.mark.parametrize("chunk", [3, 512])
def test_a_jet_does_not_see_its_neighbours(monkeypatch, dtype, value, chunk):
    """Every other jet of a batch replaced by extreme momenta (the px of every
    constituent, or all components for 'tiny'): the good jets' features are what they
    are alone, finite, in forward and forward_packed, sub-batched or whole."""
    monkeypatch.setattr(bip, "CPU_CHUNK", chunk)
    jets = toy_jets(12, seed=5, min_particles=2)
    for i in range(1, 12, 2):
        j = jets[i].copy()
        if value == "tiny":
            j[:] = EXTREMES[value]
        else:
            j[:, 1] = EXTREMES[value]
        jets[i] = j
    p4, mask = pad(jets, dtype=dtype)
    good = list(range(0, 12, 2))
    counts = mask.sum(1)
    for f in (BIPFeatures(3, 6, mirror=True), LorentzACEFeatures(order=3, degree=6)):
        alone = torch.cat([f(*pad([jets[i]], dtype=dtype)) for i in good])
        assert torch.isfinite(alone).all()
        runs = {"padded": f(p4, mask)}
        if isinstance(f, BIPFeatures):
            runs["packed"] = f.forward_packed(p4[mask], counts)
        for path, x in runs.items():
            assert torch.isfinite(x[good]).all(), f"{type(f).__name__} {path}: non-finite"
            assert_reproduced(x[good], alone, f"{type(f).__name__} {path} beside {value} jets")


@pytest.mark.reproducibility
def test_empty_jets_beside_non_finite_ones_give_zeros():
    """Packed: an empty jet reads no constituent, so a non-finite neighbour leaves it 0."""
    jets = toy_jets(4, seed=6, min_particles=2)
    jets[1] = np.zeros((0, 4))
    jets[2] = jets[2].copy()
    jets[2][:, 0] = np.nan
    p4, mask = pad(jets)
    f = BIPFeatures(3, 6)
    x = f.forward_packed(p4[mask], mask.sum(1))
    assert torch.equal(x[1], torch.zeros_like(x[1]))
    assert torch.isfinite(x[[0, 3]]).all() and not torch.isfinite(x[2]).all()


# ------------------------------------------------------------ instruction sets

_COMPUTE = """
import sys, numpy as np, torch
from symmetry import pad
from toyjets import toy_jets
import jetace.features.bip as bip
from jetace import BIPFeatures, LorentzACEFeatures
jets = toy_jets(40, seed=8, min_particles=1)
out = {"capability": np.array(torch.backends.cpu.get_cpu_capability())}
for dtype in (torch.float32, torch.float64):
    p4, mask = pad(jets, dtype=dtype)
    name = str(dtype)[-2:]
    out["bip" + name] = BIPFeatures(4, 7).forward(p4, mask).numpy()
    out["lorentz" + name] = LorentzACEFeatures().forward(p4, mask).numpy()
    bip.CPU_CHUNK = 7
    out["packed" + name] = BIPFeatures(4, 7).forward_packed(p4[mask], mask.sum(1)).numpy()
np.savez(sys.argv[1], **out)
"""


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get(SECOND_PASS)), reason="runs in the first pass only")
def test_features_agree_across_instruction_sets(tmp_path):
    """Native kernels against AVX2 (on AVX-512 machines) and the scalar fallback."""
    others = sorted({_other_capability(), "default"})
    results = {}
    for capability in (None, *others):
        env = _capability_env(capability) if capability else {
            **os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS),
                                                         os.environ.get("PYTHONPATH", "")])}
        out = tmp_path / f"{capability or 'native'}.npz"
        subprocess.run([sys.executable, "-c", _COMPUTE, str(out)], env=env, check=True,
                       timeout=300)
        with np.load(out) as data:
            results[capability] = {k: data[k] for k in data.files}
    native = results[None]
    for other in others:
        narrow = results[other]
        assert str(narrow["capability"]).lower() == other  # the kernels really changed
        for key in native:
            if key == "capability":
                continue
            dtype = torch.float32 if key.endswith("32") else torch.float64
            a, b = torch.from_numpy(native[key]), torch.from_numpy(narrow[key])
            assert a.dtype == dtype
            assert_reproduced(b, a, f"{key}: {native['capability']} against {other}")
    # and the packed sub-batches against the padded whole, under every capability
    for res in results.values():
        for name in ("32", "64"):
            assert_reproduced(torch.from_numpy(res["packed" + name]),
                              torch.from_numpy(res["bip" + name]), f"packed {name}")


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get(SECOND_PASS)), reason="runs in the first pass only")
def test_reproducibility_tests_pass_under_another_instruction_set():
    """The second pass: every test marked ``reproducibility``, under the other kernels."""
    other = _other_capability()
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "reproducibility", "-p",
           "no:cacheprovider", "-x", str(TESTS)]
    run = subprocess.run(cmd, env=_capability_env(other), capture_output=True, text=True,
                         timeout=900)
    tail = (run.stdout + run.stderr)[-3000:]
    assert run.returncode == 0, f"under ATEN_CPU_CAPABILITY={other}:\n{tail}"
    assert " passed" in tail and " failed" not in tail, tail
