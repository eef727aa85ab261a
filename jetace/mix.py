"""Mixed samples of known composition from labelled files, for weak supervision tests.

:func:`mix_files` draws ``n`` jets, a fraction ``fraction`` of them from signal files
and the rest from background files (without replacement, seeded), shuffles them and
writes a JetClass-layout ROOT file: jagged ``part_*`` constituent branches (counter
``npart``), ``jet_*`` and ``label_*`` branches as read, plus ``mix_is_signal`` (bool),
so that the truth of every jet stays known while a weakly supervised tagger (CWoLa,
:class:`jetace.taggers.weak.CWoLaTagger`) only sees which mixture a jet is in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from jetace.errors import InputError, JetaceError
from jetace.io import read_jets
from jetace.outputs import TableWriter, check_output_of, jet_columns

__all__ = ["mix_files", "MIX_TRUTH"]

MIX_TRUTH = "mix_is_signal"  #: branch holding the truth of every mixed jet


def _items(paths: Any) -> list:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def _fields(jets: ak.Array) -> list[str]:
    """Constituent, jet and label fields of ``jets``, as branch-like names."""
    return ([f"part_{f}" for f in ak.fields(jets["constituents"])]
            + [f"jet_{f}" for f in ak.fields(jets["jet"])]
            + [f for f in ak.fields(jets) if f not in ("constituents", "jet")])


def _draw(paths: Any, n: int, what: str, rng: np.random.Generator, read_kw: dict) -> ak.Array:
    jets = read_jets(paths, **read_kw)
    if n > len(jets):
        raise InputError(f"the mixture needs {n} {what} jets but the {what} files hold only "
                         f"{len(jets)}: lower -n or the fraction, or add files")
    return jets[np.sort(rng.choice(len(jets), n, replace=False))]


def mix_files(signal: Any, background: Any, output: str | os.PathLike, fraction: float,
              n: int, seed: int = 0, tree: str = "tree", schema: Any = "jetclass",
              max_jets: int | None = None) -> dict[str, int]:
    """Write a shuffled mixture of ``n`` jets with ``round(fraction * n)`` signal jets.

    ``signal``, ``background``: ROOT file paths or patterns (read with
    :func:`jetace.read_jets`, ``tree``/``schema``/``max_jets`` as there; every jet of the
    inputs is read, so cap large inputs with ``max_jets``). ``output``: a ``.root`` file,
    TTree ``tree``. Returns ``{"n_jets", "n_signal", "n_background"}``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"signal fraction must lie in [0, 1], got {fraction}")
    if n < 1:
        raise InputError(f"the mixture needs at least one jet, got -n {n}")
    out = Path(output)
    check_output_of(out, [*_items(signal), *_items(background)])
    if out.suffix.lower() != ".root":
        raise JetaceError(f"{out}: mixtures are written as ROOT files; use a .root name")
    rng = np.random.default_rng(seed)
    n_sig = int(round(fraction * n))
    read_kw = {"tree": tree, "schema": schema, "max_jets": max_jets}
    parts = []
    if n_sig:
        parts.append(_draw(signal, n_sig, "signal", rng, read_kw))
    if n - n_sig:
        parts.append(_draw(background, n - n_sig, "background", rng, read_kw))
    if len(parts) > 1 and _fields(parts[0]) != _fields(parts[1]):
        raise InputError(f"the signal files {_items(signal)} and the background files "
                         f"{_items(background)} hold different branches ({_fields(parts[0])} "
                         f"against {_fields(parts[1])}); a mixture needs the same layout")
    jets = ak.concatenate(parts) if len(parts) > 1 else parts[0]
    truth = np.r_[np.ones(n_sig, bool), np.zeros(n - n_sig, bool)]
    order = rng.permutation(n)
    jets, truth = jets[order], truth[order]

    cons = jets["constituents"]
    part = ak.zip({name: ak.without_parameters(cons[name]) for name in ak.fields(cons)})
    flat = jet_columns(jets)
    if "jet_nparticles" not in flat:
        flat["jet_nparticles"] = ak.to_numpy(ak.num(cons, axis=1)).astype(np.int32)
    if MIX_TRUTH in flat:
        raise InputError(f"the inputs already have a branch {MIX_TRUTH!r}, the name the "
                         "mixture gives its truth; mix files that are not mixtures")
    flat[MIX_TRUTH] = truth
    # written under a temporary name, renamed when complete (jetace.outputs)
    with TableWriter(out, tree=tree) as writer:
        writer.write({"part": part, **flat})
    return {"n_jets": n, "n_signal": n_sig, "n_background": n - n_sig}
