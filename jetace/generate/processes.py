"""The processes ``jetace generate`` knows, their default cuts, and the checks and seeds
of a generation run.

Two families of processes, each with the label branches its files carry:

* the JetClass-style family (:data:`LABELS`, JetClass's label names, arXiv:2202.03772):
  top, qcd, w, z and the hadronic Higgs decays hbb, hcc, hgg, h4q, plus the
  semi-leptonic hqql and tbl; jets of R = 0.8, 550 <= pT <= 650 GeV, |eta| < 2;
* the quark/gluon benchmark (:data:`QG_LABELS`): zq and zg, Z(-> nu nu) + quark or
  gluon as energyflow's quark/gluon dataset (arXiv:1810.05165): R = 0.4,
  500 <= pT <= 550 GeV, |y| < 1.7 (rapidity, not pseudorapidity), underlying event on.

A file carries every label branch of its family, one-hot, so that files of different
processes of one family can be concatenated and trained on together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from jetace.errors import JetaceError

__all__ = ["LABELS", "QG_LABELS", "LABEL_SETS", "DEFAULT_OPTIONS", "ProcessSpec",
           "PROCESSES", "resolve_options", "describe_cuts", "pthat_window", "worker_seed",
           "check_options"]

#: label branches of every JetClass-style file, in this order: the four of the first
#: jetace samples (files written before the Higgs processes carry only these), then
#: JetClass's others (label_Hqql: H -> W W* -> l nu q q'; label_Tbl: t -> b l nu)
LABELS: tuple[str, ...] = ("label_Tbqq", "label_QCD", "label_Wqq", "label_Zqq",
                           "label_Hbb", "label_Hcc", "label_Hgg", "label_H4q",
                           "label_Hqql", "label_Tbl")
#: label branches of the quark/gluon files: label_q (quark jet), label_g (gluon jet)
QG_LABELS: tuple[str, ...] = ("label_q", "label_g")
#: the label families: a file carries all label branches of its process's family
LABEL_SETS: tuple[tuple[str, ...], ...] = (LABELS, QG_LABELS)

#: generation options of a process that does not set its own (the JetClass-style cuts)
DEFAULT_OPTIONS: dict = {"radius": 0.8, "pt_min": 550.0, "pt_max": 650.0, "eta_max": 2.0,
                         "y_max": None, "mpi": False}
# the quark/gluon benchmark of energyflow (arXiv:1810.05165): R = 0.4, 500-550 GeV,
# |y| < 1.7, hadronisation and multi-parton interactions on
_QG_OPTIONS = {"radius": 0.4, "pt_min": 500.0, "pt_max": 550.0, "eta_max": None,
               "y_max": 1.7, "mpi": True}

_QUARKS = (1, 2, 3, 4, 5)
_HADRONIC_W = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")
_HADRONIC_Z = ("23:onMode = off", "23:onIfAny = 1 2 3 4 5")
# W -> q q', e nu or mu nu, both charges alike: the matching keeps the decays with one
# lepton (forcing W+ hadronic and W- leptonic instead would give every lepton charge -1)
_W_TO_QUARKS_OR_LEPTON = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5 11 13")
_INVISIBLE_Z = ("WeakZ0:gmZmode = 2", "23:onMode = off", "23:onIfAny = 12 14 16")
_TTBAR = ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on")
# H + jet through the top loop (Pythia's g g -> H g, q g -> H q, q qbar -> H g)
_H_PLUS_JET = ("HiggsSM:gg2Hg(l:t) = on", "HiggsSM:qg2Hq(l:t) = on",
               "HiggsSM:qqbar2Hg(l:t) = on")


def _higgs(*decay: str) -> tuple[str, ...]:
    return (*_H_PLUS_JET, "25:onMode = off", *decay)


@dataclass(frozen=True)
class ProcessSpec:
    """A generated process: Pythia settings, the label, and the truth a jet must match.

    ``resonance`` is the PDG id (absolute value) of the top or boson whose decay
    products must lie inside the jet, ``n_products`` how many visible decay products it
    has (quarks, gluons, charged leptons; W and Z are followed to their decays), of
    which ``n_leptons`` are charged leptons. ``partons`` (absolute PDG ids) instead asks
    for an outgoing parton of the hard process of one of these flavours inside the jet.
    Neither: every jet that passes the cuts is kept (QCD). ``labels`` are the label
    branches its files carry, ``options`` its own defaults of the generation options
    (see :data:`DEFAULT_OPTIONS`).
    """

    description: str
    label: str
    settings: tuple[str, ...]
    resonance: int | None = None
    n_products: int = 0
    n_leptons: int = 0
    partons: tuple[int, ...] = ()
    labels: tuple[str, ...] = LABELS
    options: dict = field(default_factory=dict, hash=False)

    @property
    def matched(self) -> bool:
        """Whether a jet must contain a truth particle (a decay or a hard parton)."""
        return self.resonance is not None or bool(self.partons)


PROCESSES: dict[str, ProcessSpec] = {
    "top": ProcessSpec("t tbar, W -> q q' (all-hadronic)", "label_Tbqq",
                       (*_TTBAR, *_HADRONIC_W), 6, 3),
    "qcd": ProcessSpec("hard QCD dijets (light quarks and gluons)", "label_QCD",
                       ("HardQCD:all = on",)),
    "w": ProcessSpec("W + jet, W -> q q'", "label_Wqq",
                     ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
                      *_HADRONIC_W), 24, 2),
    "z": ProcessSpec("Z + jet, Z -> q qbar", "label_Zqq",
                     ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                      "WeakZ0:gmZmode = 2", *_HADRONIC_Z), 23, 2),
    "hbb": ProcessSpec("H + jet, H -> b bbar", "label_Hbb",
                       _higgs("25:onIfMatch = 5 -5"), 25, 2),
    "hcc": ProcessSpec("H + jet, H -> c cbar", "label_Hcc",
                       _higgs("25:onIfMatch = 4 -4"), 25, 2),
    "hgg": ProcessSpec("H + jet, H -> g g", "label_Hgg",
                       _higgs("25:onIfMatch = 21 21"), 25, 2),
    "h4q": ProcessSpec("H + jet, H -> W W* or Z Z* -> 4 quarks", "label_H4q",
                       _higgs("25:onIfMatch = 24 -24", "25:onIfMatch = 23 23",
                              *_HADRONIC_W, *_HADRONIC_Z), 25, 4),
    "hqql": ProcessSpec("H + jet, H -> W W* -> l nu q q' (l = e, mu)", "label_Hqql",
                        _higgs("25:onIfMatch = 24 -24", *_W_TO_QUARKS_OR_LEPTON), 25, 3, 1),
    "tbl": ProcessSpec("t tbar, t -> b l nu (l = e, mu), matched to the leptonic top",
                       "label_Tbl", (*_TTBAR, *_W_TO_QUARKS_OR_LEPTON), 6, 2, 1),
    "zq": ProcessSpec("Z(-> nu nu) + quark, q g -> Z q, jet of a u, d or s quark "
                      "(energyflow's quark jets)", "label_q",
                      ("WeakBosonAndParton:qg2gmZq = on", *_INVISIBLE_Z),
                      partons=(1, 2, 3), labels=QG_LABELS, options=_QG_OPTIONS),
    "zg": ProcessSpec("Z(-> nu nu) + gluon, q qbar -> Z g (energyflow's gluon jets)",
                      "label_g", ("WeakBosonAndParton:qqbar2gmZg = on", *_INVISIBLE_Z),
                      partons=(21,), labels=QG_LABELS, options=_QG_OPTIONS),
}


def resolve_options(process: str, **given) -> dict:
    """The generation options of ``process``: ``given`` where not None, else the
    process's own default, else :data:`DEFAULT_OPTIONS`.

    Keys: ``radius``, ``pt_min``, ``pt_max``, ``eta_max``, ``y_max``, ``mpi``
    (``eta_max`` / ``y_max`` None: no cut on |eta| / |y|).
    """
    unknown = sorted(set(given) - set(DEFAULT_OPTIONS))
    if unknown:
        raise JetaceError(f"unknown generation option(s) {unknown}; "
                          f"options: {', '.join(DEFAULT_OPTIONS)}")
    spec = _known(process)
    out = {**DEFAULT_OPTIONS, **spec.options}
    out.update({k: v for k, v in given.items() if v is not None})
    return out


def _known(process: str) -> ProcessSpec:
    if process not in PROCESSES:
        raise JetaceError(f"unknown process {process!r}; known processes: "
                          + ", ".join(f"{k} ({v.description})" for k, v in PROCESSES.items()))
    return PROCESSES[process]


def describe_cuts(pt_min: float, pt_max: float, eta_max: float | None,
                  y_max: float | None) -> str:
    """The jet cuts in words, e.g. ``500 <= pT <= 550 GeV and |y| < 1.7``."""
    cuts = [f"{pt_min:g} <= pT <= {pt_max:g} GeV"]
    if eta_max is not None and not math.isinf(eta_max):
        cuts.append(f"|eta| < {eta_max:g}")
    if y_max is not None and not math.isinf(y_max):
        cuts.append(f"|y| < {y_max:g}")
    return " and ".join(cuts)


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
                  pt_min: float, pt_max: float, eta_max: float | None, workers: int,
                  y_max: float | None = None) -> ProcessSpec:
    """The :class:`ProcessSpec` of ``process``, or a JetaceError naming every problem."""
    spec = _known(process)
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
    if eta_max is not None and not eta_max > 0:
        problems.append(f"the |eta| cut must be positive, got eta_max={eta_max}")
    if y_max is not None and not y_max > 0:
        problems.append(f"the |y| (rapidity) cut must be positive, got y_max={y_max}")
    if not isinstance(workers, (int, np.integer)) or workers <= 0:
        problems.append(f"the number of workers must be a positive integer, got {workers!r}")
    if problems:
        raise JetaceError(f"impossible generation options for {process}: "
                          + "; ".join(problems))
    return spec
