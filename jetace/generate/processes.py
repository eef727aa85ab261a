"""The processes ``jetace generate`` knows, and the checks and seeds of a generation run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jetace.errors import JetaceError

__all__ = ["LABELS", "ProcessSpec", "PROCESSES", "pthat_window", "worker_seed", "check_options"]

#: label branches written to every file, in this order
LABELS: tuple[str, ...] = ("label_Tbqq", "label_QCD", "label_Wqq", "label_Zqq")

_HADRONIC_W = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")
_HADRONIC_Z = ("23:onMode = off", "23:onIfAny = 1 2 3 4 5")


@dataclass(frozen=True)
class ProcessSpec:
    """A generated process: Pythia settings, the label, and the particle to match.

    ``resonance`` is the PDG id (absolute value) of the top or boson whose decay quarks
    must lie inside the jet, ``n_quarks`` how many decay quarks it has (None for QCD).
    """

    description: str
    label: str
    settings: tuple[str, ...]
    resonance: int | None = None
    n_quarks: int = 0


PROCESSES: dict[str, ProcessSpec] = {
    "top": ProcessSpec("t tbar, W -> q q' (all-hadronic)", "label_Tbqq",
                       ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *_HADRONIC_W), 6, 3),
    "qcd": ProcessSpec("hard QCD dijets (light quarks and gluons)", "label_QCD",
                       ("HardQCD:all = on",)),
    "w": ProcessSpec("W + jet, W -> q q'", "label_Wqq",
                     ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
                      *_HADRONIC_W), 24, 2),
    "z": ProcessSpec("Z + jet, Z -> q qbar", "label_Zqq",
                     ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                      "WeakZ0:gmZmode = 2", *_HADRONIC_Z), 23, 2),
}


def pthat_window(pt_min: float, pt_max: float) -> tuple[float, float]:
    """The Pythia pTHat window (GeV) used for a jet pT window [pt_min, pt_max] (GeV).

    It extends the jet window on both sides by 0.7 times its width, at least by 10% of
    ``pt_min``, so that jets pushed into the window by radiation are not lost: 550-650
    GeV gives 480-720 GeV, the window of the project's development samples.
    """
    margin = max(0.7 * (pt_max - pt_min), 0.1 * pt_min)
    return max(pt_min - margin, 0.0), pt_max + margin


def worker_seed(seed: int, worker: int) -> int:
    """The Pythia ``Random:seed`` (1..900000000) of worker ``worker`` for ``seed``."""
    state = np.random.SeedSequence([int(seed), int(worker)]).generate_state(1, np.uint64)[0]
    return int(state % 900_000_000) + 1


def check_options(process: str, n_jets: int, seed: int, sqrts: float, radius: float,
                   pt_min: float, pt_max: float, eta_max: float, workers: int) -> ProcessSpec:
    if process not in PROCESSES:
        raise JetaceError(f"unknown process {process!r}; known processes: "
                          + ", ".join(f"{k} ({v.description})" for k, v in PROCESSES.items()))
    problems = []
    if not isinstance(n_jets, (int, np.integer)) or n_jets <= 0:
        problems.append(f"the number of jets must be a positive integer, got {n_jets!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        problems.append(f"the seed must be a non-negative integer, got {seed!r}")
    if not sqrts > 0:
        problems.append(f"the centre-of-mass energy must be positive, got {sqrts} GeV")
    if not radius > 0:
        problems.append(f"the jet radius must be positive, got {radius}")
    if not 0 <= pt_min < pt_max:
        problems.append(f"the jet pT window must satisfy 0 <= pt_min < pt_max, "
                        f"got pt_min={pt_min} GeV, pt_max={pt_max} GeV")
    elif 2 * pt_min >= sqrts:
        problems.append(f"jets with pT >= {pt_min} GeV cannot be made at sqrt(s) = {sqrts} GeV")
    if not eta_max > 0:
        problems.append(f"the |eta| cut must be positive, got eta_max={eta_max}")
    if not isinstance(workers, (int, np.integer)) or workers <= 0:
        problems.append(f"the number of workers must be a positive integer, got {workers!r}")
    if problems:
        raise JetaceError("impossible generation options: " + "; ".join(problems))
    return PROCESSES[process]
