"""Jet samples from Pythia 8 and FastJet, written in the JetClass layout.

This module is the optional ``generate`` extra (``pip install 'jetace[generate]'``): it
needs ``pythia8mc`` (Pythia 8.317) and ``fastjet`` (3.5.2), both imported only when
jets are generated. :func:`demo_files` (the small samples shipped with jetace) works
without them.

Recipe (the same as the development samples of the project):

* pp collisions at ``sqrts`` (default 14 TeV), Pythia 8 default tune and hadronisation,
  multi-parton interactions off unless asked (on by default for ``zq``/``zg``), no
  detector simulation;
* the hard process is generated in a pTHat window around the jet pT window
  (:func:`pthat_window`, 480-720 GeV for the default 550-650 GeV, 450-600 GeV for the
  quark/gluon 500-550 GeV);
* anti-kT jets of radius ``radius`` (FastJet, E-scheme) are clustered from all visible
  final-state particles (everything except neutrinos and other invisible particles);
* of each event the two hardest jets are kept when ``pt_min <= pT <= pt_max``,
  ``|eta| < eta_max`` and ``|y| < y_max`` (each cut only where set);
* truth matching (pseudorapidity-azimuth distance Delta R to the jet axis): for a
  decay (top, w, z, the Higgs processes, tbl) a jet is kept only when the top quark or
  boson (its last copy before the decay) and all its visible decay products (quarks,
  gluons, charged leptons; W and Z followed to their decays) lie within Delta R <
  ``radius``; for ``zq``/``zg`` only when the outgoing parton of the hard process
  (Pythia status 23) of the sample's flavour does; QCD jets are not matched;
* constituents are stored sorted by decreasing pT, all of them.

Processes (:data:`PROCESSES`), JetClass-style family (defaults R = 0.8, 550-650 GeV,
|eta| < 2, MPI off; label names as JetClass, arXiv:2202.03772):

=======  ==================================================  ============
name     Pythia process                                      label branch
=======  ==================================================  ============
top      t tbar (gg, q qbar), W -> q q' (both W hadronic)    label_Tbqq
qcd      all hard QCD 2 -> 2 (light-quark and gluon jets)    label_QCD
w        W + jet (q qbar -> W g, q g -> W q), W -> q q'      label_Wqq
z        Z + jet (q qbar -> Z g, q g -> Z q), Z -> q qbar    label_Zqq
hbb      H + jet (top loop: gg -> Hg, qg -> Hq, qqbar -> Hg) label_Hbb
         H -> b bbar
hcc      H + jet, H -> c cbar                                label_Hcc
hgg      H + jet, H -> g g                                   label_Hgg
h4q      H + jet, H -> W W* or Z Z*, W -> q q', Z -> q qbar  label_H4q
hqql     H + jet, H -> W W*, W -> q q' or e/mu nu; the       label_Hqql
         decays with one lepton matched (q, q', lepton)
tbl      t tbar, W -> q q' or e/mu nu; a leptonic top        label_Tbl
         matched (b, lepton)
=======  ==================================================  ============

and the quark/gluon benchmark (defaults R = 0.4, 500-550 GeV, |y| < 1.7, no |eta| cut,
MPI on: the settings of energyflow's quark/gluon dataset, arXiv:1810.05165):

=======  ==================================================  ============
zq       q g -> Z q, Z -> nu nu (photon off), jet matched    label_q
         to the outgoing u, d or s quark (c, b: not kept)
zg       q qbar -> Z g, Z -> nu nu (photon off), jet         label_g
         matched to the outgoing gluon
=======  ==================================================  ============

W and Z jets come from boson + jet production (not from a heavy resonance), so the
boson pT spectrum is set by the same pTHat window as the other processes; Z decays to
all five quark flavours (b bbar included), W to q q' with q, q' in u, d, s, c, b. The
Higgs (125 GeV) comes from H + jet through the top loop in Pythia's large-top-mass
approximation (its pT spectrum is approximate at these pT; the decay is exact); Higgs
and top jets are otherwise made like the W and Z ones. JetClass itself was made with
MadGraph5 + Pythia 8 + Delphes at 500-1000 GeV: these samples share its classes and
labels, not its production or detector.

Output (ROOT TTree ``tree``, or an RNTuple with ``rntuple=True``): jagged
``part_px, part_py, part_pz, part_energy`` (GeV, float32), ``part_pid`` (PDG id,
int32), ``part_charge`` (units of e, float32) with counter ``npart``; per jet
``jet_pt, jet_eta, jet_phi, jet_energy, jet_mass`` (GeV, float32; the four-momentum
sum of the constituents) and ``jet_nparticles`` (int32); one-hot bool label branches,
every branch of the process's family so that files of one family can be mixed:
:data:`LABELS` (``label_Tbqq, label_QCD, label_Wqq, label_Zqq, label_Hbb, label_Hcc,
label_Hgg, label_H4q, label_Hqql, label_Tbl``; files written before the Higgs
processes, like the shipped demo samples, carry only the first four) or
:data:`QG_LABELS` (``label_q, label_g``).

Reproducibility: worker ``k`` of ``workers`` runs Pythia with a seed derived from
``(seed, k)`` only (:func:`worker_seed`) and produces the first ``n_k`` jets of its
event stream, ``n_k = n_jets // workers`` plus one for the first ``n_jets % workers``
workers. The output is the concatenation of the workers' jets in worker order, so it
depends on ``(seed, workers, n_jets)`` and not on scheduling; in particular the jets of
``workers=1`` are the first jets of worker 0 of any ``workers=W`` run with that seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from jetace.errors import JetaceError
from jetace.generate.output import parse_compression, write_jets
from jetace.generate.parallel import run_workers, worker_paths, worker_quotas
from jetace.generate.processes import (
    LABELS,
    PROCESSES,
    QG_LABELS,
    ProcessSpec,
    check_options,
    pthat_window,
    resolve_options,
    worker_seed,
)
from jetace.generate.pythia import generate_jets, import_generators

__all__ = [
    "PROCESSES",
    "LABELS",
    "QG_LABELS",
    "ProcessSpec",
    "resolve_options",
    "GenerationSummary",
    "generate",
    "generate_jets",
    "pthat_window",
    "worker_seed",
    "write_jets",
    "demo_files",
]


@dataclass
class GenerationSummary:
    """What :func:`generate` did: files written, jets, events and time (s)."""

    files: list[Path]
    n_jets: int
    n_events: int
    seconds: float
    workers: int
    per_worker_seconds: list[float] = field(default_factory=list)
    per_worker_cpu_seconds: list[float] = field(default_factory=list)

    @property
    def jets_per_second(self) -> float:
        """Jets per second of wall time, all workers together (writing included)."""
        return self.n_jets / self.seconds if self.seconds > 0 else math.inf

    @property
    def jets_per_second_per_worker(self) -> float:
        """Mean jets per second of one worker (generation and clustering only)."""
        busy = sum(self.per_worker_seconds)
        return self.n_jets / busy if busy > 0 else math.inf

    @property
    def jets_per_cpu_second(self) -> float:
        """Jets per CPU second of the workers: the rate of one worker on an idle core."""
        busy = sum(self.per_worker_cpu_seconds)
        return self.n_jets / busy if busy > 0 else math.inf


def generate(process: str, n_jets: int, output: str | Path, *, seed: int = 0,
             sqrts: float = 14000.0, radius: float | None = None, pt_min: float | None = None,
             pt_max: float | None = None, eta_max: float | None = None,
             y_max: float | None = None, mpi: bool | None = None, workers: int = 1,
             rntuple: bool = False, split: bool = False, compression: str | None = "zlib:1",
             pthat: tuple[float, float] | None = None, pythia_settings: Sequence[str] = (),
             progress: bool = True) -> GenerationSummary:
    """Generate ``n_jets`` jets of ``process`` with Pythia 8 + FastJet and write them.

    Parameters
    ----------
    process : one of :data:`PROCESSES` (see the module doc): ``top``, ``qcd``, ``w``,
        ``z``, ``hbb``, ``hcc``, ``hgg``, ``h4q``, ``hqql``, ``tbl``, ``zq``, ``zg``.
    n_jets : number of jets written (exactly).
    output : ROOT file to (re)create.
    seed : non-negative integer; the same seed, ``workers`` and ``n_jets`` give the same jets.
    sqrts : pp centre-of-mass energy in GeV.
    radius : anti-kT radius R; also the Delta R of the truth-matching rule.
    pt_min, pt_max : jet pT window in GeV (inclusive).
    eta_max : jets need ``|eta| < eta_max`` (pseudorapidity).
    y_max : jets need ``|y| < y_max`` (rapidity).
    mpi : multi-parton interactions (underlying event) on or off.

    ``radius``, ``pt_min``, ``pt_max``, ``eta_max``, ``y_max`` and ``mpi`` left None take
    the process's defaults: R = 0.8, 550-650 GeV, |eta| < 2, no |y| cut, MPI off for the
    JetClass-style processes; R = 0.4, 500-550 GeV, no |eta| cut, |y| < 1.7, MPI on for
    ``zq`` and ``zg``. A value given replaces the default (``math.inf`` lifts a cut).
    workers : worker processes, each with its own Pythia seeded by :func:`worker_seed`.
    rntuple : write an RNTuple instead of a TTree (same field names).
    split : with several workers, write one file per worker, ``OUTPUT_<k>.root``, instead
        of one merged file (workers then write in parallel; nothing is sent back).
    compression : ``"zlib:1"`` (default, as the development samples), ``"lzma:9"``,
        ``"lz4"``, ``"zstd:5"`` ... or ``None`` / ``"none"``.
    pthat : Pythia pTHat window in GeV; default :func:`pthat_window` of the pT window.
    pythia_settings : extra Pythia ``readString`` lines, applied last.
    progress : show a tqdm bar with jets/s on stderr.

    Returns a :class:`GenerationSummary`. Raises :class:`~jetace.errors.JetaceError` for
    an unknown process, impossible cuts or a missing ``generate`` extra.
    """
    from tqdm.auto import tqdm

    opt = resolve_options(process, radius=radius, pt_min=pt_min, pt_max=pt_max,
                          eta_max=eta_max, y_max=y_max, mpi=mpi)
    spec = check_options(process, n_jets, seed, sqrts, opt["radius"], opt["pt_min"],
                         opt["pt_max"], opt["eta_max"], workers, opt["y_max"])
    parse_compression(compression)  # fail before hours of generation, not after
    import_generators()
    output = Path(output)
    if not output.parent.is_dir():
        raise JetaceError(f"cannot write {output}: directory {output.parent} does not exist")
    kwargs = dict(process=process, seed=seed, sqrts=sqrts, **opt, pthat=pthat,
                  pythia_settings=tuple(pythia_settings))
    write_kw = dict(rntuple=rntuple, compression=compression)
    quotas = worker_quotas(n_jets, workers)
    split = split and workers > 1
    files = worker_paths(output, workers) if split else [output]
    start = time.perf_counter()
    bars = []

    def make_bar():
        bars.append(tqdm(total=n_jets, unit=" jets", desc=f"generate {process}",
                         disable=not progress, dynamic_ncols=True))
        return bars[-1]

    try:
        if workers == 1:
            results = [generate_jets(n_jets=n_jets, worker=0, progress=make_bar().update,
                                     **kwargs)]
        else:
            results = run_workers(quotas, kwargs, [str(f) for f in files] if split
                                  else [None] * workers, spec.label, write_kw, make_bar)
    finally:
        for bar in bars:
            bar.close()
    if not split:
        merged = {k: np.concatenate([r[k] for r in results])
                  for k in ("p4", "pid", "charge", "counts", "jet")}
        write_jets(output, merged, spec.label, **write_kw)
    seconds = time.perf_counter() - start
    return GenerationSummary(files=files, n_jets=n_jets,
                             n_events=sum(int(r["n_events"]) for r in results),
                             seconds=seconds, workers=workers,
                             per_worker_seconds=[float(r["seconds"]) for r in results],
                             per_worker_cpu_seconds=[float(r["cpu_seconds"]) for r in results])


_DEMO = ("demo_top.root", "demo_qcd.root")


def demo_files() -> tuple[Path, Path]:
    """Paths of the shipped demo samples ``(top, qcd)`` (see jetace/data/README.md).

    Both are JetClass-layout ROOT files made by ``jetace generate`` with fixed seeds.
    """
    base = resources.files("jetace") / "data"
    paths = tuple(Path(str(base / name)) for name in _DEMO)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise JetaceError(f"jetace's demo data is missing ({', '.join(missing)}): "
                          "reinstall jetace, or make your own with `jetace generate`")
    return paths  # type: ignore[return-value]
