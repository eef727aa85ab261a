"""One seeded Pythia 8 instance -> anti-kT jets (FastJet) that pass the cuts, in event order."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from jetace.errors import JetaceError
from jetace.generate.processes import (
    ProcessSpec,
    check_options,
    describe_cuts,
    pthat_window,
    resolve_options,
    worker_seed,
)

__all__ = ["generate_jets", "import_generators"]

_QUIET = ("Print:quiet = on", "Print:errors = off", "Next:numberCount = 0",
          "Next:numberShowEvent = 0", "Next:numberShowProcess = 0", "Next:numberShowInfo = 0",
          "Next:numberShowLHA = 0", "Init:showProcesses = off", "Init:showChangedSettings = off",
          "Init:showChangedParticleData = off")

_BATCH_EVENTS = 50          # events per Pythia batch (does not change the output)
_MAX_BARREN_EVENTS = 20000  # consecutive events without an accepted jet before giving up


def import_generators():
    """(pythia8mc, fastjet), or a JetaceError naming the extra to install."""
    missing = []
    try:
        import pythia8mc
    except ImportError:
        missing.append("pythia8mc")
    try:
        import fastjet
    except ImportError:
        missing.append("fastjet")
    if missing:
        raise JetaceError(f"jet generation needs {' and '.join(missing)}, which "
                          f"{'is' if len(missing) == 1 else 'are'} not installed: "
                          "pip install 'jetace[generate]'")
    return pythia8mc, fastjet


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null (C++ banners bypass sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


class _JetStream:
    """Events from one seeded Pythia instance -> accepted jets, in event order."""

    def __init__(self, spec: ProcessSpec, seed: int, sqrts: float, radius: float,
                 pt_min: float, pt_max: float, eta_max: float | None, y_max: float | None,
                 mpi: bool, pthat: tuple[float, float], extra_settings: Sequence[str]):
        pythia8mc, fastjet = import_generators()
        self.spec, self.radius = spec, radius
        self.pt_min, self.pt_max = pt_min, pt_max
        self.eta_max = math.inf if eta_max is None else eta_max
        self.y_max = math.inf if y_max is None else y_max
        settings = [*_QUIET, f"Beams:eCM = {sqrts:g}", f"PhaseSpace:pTHatMin = {pthat[0]:g}",
                    f"PhaseSpace:pTHatMax = {pthat[1]:g}",
                    f"PartonLevel:MPI = {'on' if mpi else 'off'}",
                    "Random:setSeed = on", f"Random:seed = {seed}", *spec.settings,
                    *extra_settings]
        with _stdout_silenced():
            self.pythia = pythia8mc.Pythia("", False)
            for s in settings:
                if not self.pythia.readString(s):
                    raise JetaceError(f"Pythia rejected the setting {s!r}")
            ok = self.pythia.init()
            fastjet._swig.ClusterSequence.print_banner()  # once per process, into /dev/null
        if not ok:
            raise JetaceError("Pythia failed to initialise with "
                              f"{'; '.join(settings[len(_QUIET):])}")
        self.fastjet = fastjet
        self.jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
        self._visible: dict[int, bool] = {}
        self._charge: dict[int, float] = {}
        self.n_events = 0

    def _lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(visible, charge) of each PDG id in ``ids``, via Pythia's particle table."""
        pdata = self.pythia.particleData
        uniq, inverse = np.unique(ids, return_inverse=True)
        for i in uniq.tolist():
            if i not in self._visible:
                self._visible[i] = bool(pdata.isVisible(i))
                self._charge[i] = float(pdata.charge(i))
        vis = np.array([self._visible[i] for i in uniq.tolist()], dtype=bool)
        chg = np.array([self._charge[i] for i in uniq.tolist()], dtype=np.float32)
        return vis[inverse], chg[inverse]

    def batch(self) -> list[dict[str, np.ndarray]]:
        """Generate one batch of events; return the accepted jets in event order."""
        import awkward as ak

        with _stdout_silenced():
            events = self.pythia.nextBatch(_BATCH_EVENTS)
        self.n_events += len(events)
        prt = events.prt
        final = prt[prt.status > 0]
        ids = ak.to_numpy(ak.flatten(final.id)).astype(np.int32)
        visible, charge = self._lookup(ids)
        counts = ak.num(final)
        final = final[ak.unflatten(visible, counts)]
        ids, charge = ids[visible], charge[visible]
        counts = ak.to_numpy(ak.num(final))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        p4 = np.stack([ak.to_numpy(ak.flatten(final.p[c])) for c in ("px", "py", "pz", "e")],
                      axis=1)  # (N, 4) float64 px, py, pz, E
        vectors = ak.zip({"px": final.p.px, "py": final.p.py, "pz": final.p.pz,
                          "E": final.p.e}, with_name="Momentum4D")
        cluster = self.fastjet.ClusterSequence(vectors, self.jet_def)
        min_pt = 0.5 * self.pt_min
        members = cluster.constituent_index(min_pt=min_pt).tolist()

        jets = []
        for iev, event_jets in enumerate(members):
            if not event_jets:
                continue
            cands = []
            for idx in event_jets:
                glob = offsets[iev] + np.asarray(idx, dtype=np.int64)
                cands.append((p4[glob].sum(axis=0), glob))
            cands.sort(key=lambda c: -math.hypot(c[0][0], c[0][1]))
            truth = None
            for total, glob in cands[:2]:
                pt, eta, phi = _pt_eta_phi(total)
                if not (self.pt_min <= pt <= self.pt_max and abs(eta) < self.eta_max
                        and abs(_rapidity(total)) < self.y_max):
                    continue
                match = np.zeros((0, 3))
                if self.spec.matched:
                    if truth is None:
                        truth = _truth_groups(events.prt[iev], self.spec)
                    inside = [g for g in truth if _contained(eta, phi, g, self.radius)]
                    if not inside:
                        continue
                    match = np.array(inside[0], dtype=np.float64)
                record = self._jet_record(p4[glob], ids[glob], charge[glob], total)
                record["truth"] = match
                jets.append(record)
        return jets

    @staticmethod
    def _jet_record(p4: np.ndarray, pid: np.ndarray, charge: np.ndarray,
                    total: np.ndarray) -> dict[str, np.ndarray]:
        order = np.argsort(-np.hypot(p4[:, 0], p4[:, 1]), kind="stable")
        pt, eta, phi = _pt_eta_phi(total)
        mass = math.sqrt(max(total[3] ** 2 - total[0] ** 2 - total[1] ** 2 - total[2] ** 2, 0.0))
        return {"p4": p4[order], "pid": pid[order], "charge": charge[order],
                "jet": np.array([pt, eta, phi, total[3], mass])}


def _pt_eta_phi(p: np.ndarray) -> tuple[float, float, float]:
    """Transverse momentum, pseudorapidity and azimuth of (px, py, pz, ...)."""
    pt = math.hypot(p[0], p[1])
    eta = math.asinh(p[2] / pt) if pt > 0 else math.copysign(math.inf, p[2])
    return pt, eta, math.atan2(p[1], p[0])


def _rapidity(p: np.ndarray) -> float:
    """Rapidity 0.5 ln((E + pz) / (E - pz)) of (px, py, pz, E)."""
    plus, minus = p[3] + p[2], p[3] - p[2]
    if minus <= 0 or plus <= 0:
        return math.copysign(math.inf, p[2])
    return 0.5 * math.log(plus / minus)


def _daughters(d1: int, d2: int) -> list[int]:
    """Pythia's daughter1/daughter2 convention -> list of daughter indices."""
    if d1 <= 0:
        return []
    if d2 == 0 or d2 == d1:
        return [d1]
    return list(range(d1, d2 + 1)) if d2 > d1 else [d1, d2]


#: PDG ids (absolute) of the visible decay products followed in a truth match
_PARTONS = frozenset((1, 2, 3, 4, 5, 21))
_LEPTONS = frozenset((11, 13, 15))


def _truth_groups(event, spec: ProcessSpec) -> list[list[tuple[float, float, int]]]:
    """The (eta, phi, PDG id) groups of ``event`` one of which a jet of ``spec`` must
    contain.

    With ``spec.resonance``: for each top/boson of that id, it and its decay products
    (:func:`_decay_groups`); with ``spec.partons``: each outgoing parton of the hard
    process (status +-23) of one of those flavours, alone.
    """
    if spec.resonance is not None:
        return _decay_groups(event, spec)
    ids, status = np.asarray(event.id), np.asarray(event.status)
    mom = event.p
    px, py, pz = np.asarray(mom.px), np.asarray(mom.py), np.asarray(mom.pz)
    hard = np.flatnonzero((np.abs(status) == 23) & np.isin(np.abs(ids), spec.partons))
    return [[(*_pt_eta_phi((px[j], py[j], pz[j]))[1:], int(ids[j]))] for j in hard.tolist()]


def _decay_groups(event, spec: ProcessSpec) -> list[list[tuple[float, float, int]]]:
    """For each top/boson of ``spec`` in ``event``: (eta, phi, PDG id) of it and of its
    decay products.

    The last copy of the particle (after recoils in the shower) is used, and its decay
    products as produced in the decay: quarks, gluons and charged leptons, with W and Z
    followed to their own decays (for top: the b and the W's two quarks; neutrinos are
    not followed). A particle whose decay does not give ``spec.n_products`` products,
    ``spec.n_leptons`` of them charged leptons, is left out.
    """
    ids = np.asarray(event.id)
    d1s, d2s = np.asarray(event.daughter1), np.asarray(event.daughter2)
    mom = event.p
    px, py, pz = np.asarray(mom.px), np.asarray(mom.py), np.asarray(mom.pz)

    def last_copy(i: int) -> int:
        while True:
            same = [d for d in _daughters(d1s[i], d2s[i]) if ids[d] == ids[i]]
            if not same:
                return i
            i = same[0]

    def products(i: int) -> list[int]:
        out = []
        for d in _daughters(d1s[last_copy(i)], d2s[last_copy(i)]):
            if abs(ids[d]) in _PARTONS or abs(ids[d]) in _LEPTONS:
                out.append(d)
            elif abs(ids[d]) in (23, 24):
                out.extend(products(d))
        return out

    groups = []
    for i in np.flatnonzero(np.abs(ids) == spec.resonance).tolist():
        if last_copy(i) != i:
            continue
        ps = products(i)
        n_leptons = sum(abs(ids[j]) in _LEPTONS for j in ps)
        if len(ps) == spec.n_products and n_leptons == spec.n_leptons:
            groups.append([(*_pt_eta_phi((px[j], py[j], pz[j]))[1:], int(ids[j]))
                           for j in [i, *ps]])
    return groups


def _contained(eta: float, phi: float, group: Sequence[tuple], radius: float) -> bool:
    """Whether every (eta, phi, ...) of ``group`` lies within Delta R < radius of (eta, phi)."""
    for e, p, *_ in group:
        dphi = (p - phi + math.pi) % (2 * math.pi) - math.pi
        if (e - eta) ** 2 + dphi ** 2 >= radius ** 2:
            return False
    return True


def _pack(jets: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Jet records -> flat arrays: constituents (N, ...) plus per-jet counts and fields."""
    if not jets:
        return {"p4": np.zeros((0, 4)), "pid": np.zeros(0, np.int32),
                "charge": np.zeros(0, np.float32), "counts": np.zeros(0, np.int64),
                "jet": np.zeros((0, 5)), "truth": []}
    return {"p4": np.concatenate([j["p4"] for j in jets]),
            "pid": np.concatenate([j["pid"] for j in jets]),
            "charge": np.concatenate([j["charge"] for j in jets]),
            "counts": np.array([len(j["pid"]) for j in jets], dtype=np.int64),
            "jet": np.stack([j["jet"] for j in jets]),
            "truth": [j["truth"] for j in jets]}


def generate_jets(process: str, n_jets: int, *, seed: int = 0, worker: int = 0,
                  sqrts: float = 14000.0, radius: float | None = None,
                  pt_min: float | None = None, pt_max: float | None = None,
                  eta_max: float | None = None, y_max: float | None = None,
                  mpi: bool | None = None, pthat: tuple[float, float] | None = None,
                  pythia_settings: Sequence[str] = (),
                  progress: Callable[[int], None] | None = None) -> dict:
    """The first ``n_jets`` accepted jets of worker ``worker``'s event stream, in memory.

    Returns a dict: ``p4`` (N, 4) float64 constituent (px, py, pz, E) in GeV, ``pid``
    (N,) int32, ``charge`` (N,) float32, ``counts`` (n_jets,) constituents per jet,
    ``jet`` (n_jets, 5) float64 (pt, eta, phi, energy, mass), ``truth`` (a list, per jet
    a (k, 3) float64 array of (eta, phi, PDG id) of the truth particles the jet was
    matched to: the top or boson, then its decay products, or the hard parton; (0, 3)
    for QCD), ``n_events``, ``seconds`` (wall time) and ``cpu_seconds`` (CPU time of
    this process). ``progress`` is called
    with the number of new jets after each batch. Options left None take the process's
    defaults (:func:`~jetace.generate.processes.resolve_options`).
    """
    opt = resolve_options(process, radius=radius, pt_min=pt_min, pt_max=pt_max,
                          eta_max=eta_max, y_max=y_max, mpi=mpi)
    radius, pt_min, pt_max = opt["radius"], opt["pt_min"], opt["pt_max"]
    spec = check_options(process, n_jets, seed, sqrts, radius, pt_min, pt_max, opt["eta_max"],
                         1, opt["y_max"])
    start, cpu_start = time.perf_counter(), time.process_time()
    stream = _JetStream(spec, worker_seed(seed, worker), sqrts, radius, pt_min, pt_max,
                        opt["eta_max"], opt["y_max"], opt["mpi"],
                        pthat or pthat_window(pt_min, pt_max), pythia_settings)
    jets: list[dict[str, np.ndarray]] = []
    barren = 0
    while len(jets) < n_jets:
        before = stream.n_events
        new = stream.batch()[: n_jets - len(jets)]
        jets.extend(new)
        barren = 0 if new else barren + stream.n_events - before
        if barren >= _MAX_BARREN_EVENTS:
            raise JetaceError(f"{barren} events in a row gave no {process} jet with "
                              f"{describe_cuts(pt_min, pt_max, opt['eta_max'], opt['y_max'])}"
                              ": the cuts are out of reach of this process at this energy")
        if progress is not None and new:
            progress(len(new))
    out = _pack(jets)
    out["n_events"] = stream.n_events
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu_start
    return out
