"""Feature plans as data (jetace.features.plan, jetace.features.bip_plan): built by pure
functions without torch, printable, with column metadata and energyflow-style selection."""

from __future__ import annotations

import subprocess
import sys
from itertools import combinations_with_replacement

import pytest
from symmetry import pad
from tolerances import assert_reproduced
from toyjets import toy_jets

from jetace import BIPFeatures, LorentzACEFeatures
from jetace.features.bip_plan import bip_plan, kinematic_elements
from jetace.features.plan import Selection, enumerate_multisets, parse_selection


def test_plans_build_and_print_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch fails
            "from jetace.features.bip_plan import bip_plan\n"
            "from jetace.features.plan import Selection\n"
            "p = bip_plan(4, 7, mirror=True, select=Selection.parse('nu<=3'))\n"
            "print(p); print(p.num_features, p.columns[5].name, p.columns[5].meta)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "BIP plan: order 4, degree 7, mirror, select nu<=3" in out
    assert out.splitlines()[-1].startswith("296 ")  # as many as mirrored (4, 7) up to nu = 3


def test_enumerate_multisets_against_brute_force():
    degrees = [0, 1, 1, 2, 3]
    got = enumerate_multisets(degrees, 3, 4)
    want = [ms for nu in (1, 2, 3) for ms in combinations_with_replacement(range(5), nu)
            if sum(degrees[i] for i in ms) <= 4]
    assert got == want  # by size, then lexicographic
    assert enumerate_multisets(degrees, 3, 4, keep=lambda ms: len(ms) == 2) == \
        [ms for ms in want if len(ms) == 2]


def test_column_metadata_is_right():
    plan = bip_plan(3, 6, complete=True)
    for col in plan.columns:
        es = [plan.elements[i] for i in col.terms[0]]
        assert col.meta["nu"] == len(es)
        assert col.meta["d"] == sum(k + abs(l) + abs(n) for _, k, l, n in es) <= 6
        assert sum(e[2] for e in es) == 0 and sum(e[3] for e in es) == 0
        assert col.name.endswith("_" + col.part)
    assert plan.count_by("nu") == {nu: sum(c.meta["nu"] == nu for c in plan.columns)
                                   for nu in (1, 2, 3)}
    assert len(kinematic_elements(6)) == len(plan.kinematic)


@pytest.mark.parametrize("kw", [{}, {"mirror": True}, {"complete": True}])
def test_selection_keeps_exactly_the_selected_columns(kw):
    """Selected columns are the full plan's columns that pass, in the same order, with
    the same values; (4, 7) restricted to nu <= 3 and d <= 6 is (3, 6)."""
    full = BIPFeatures(4, 7, **kw)
    sub = BIPFeatures(4, 7, select=["nu<=3", "d<=6"], **kw)
    assert sub.feature_names == BIPFeatures(3, 6, **kw).feature_names
    keep = [i for i, c in enumerate(full.plan.columns) if c.meta["nu"] <= 3 and c.meta["d"] <= 6]
    assert [full.feature_names[i] for i in keep] == sub.feature_names
    p4, mask = pad(toy_jets(6, seed=2))
    assert_reproduced(sub(p4, mask), full(p4, mask)[:, keep], "selected columns")
    assert sub.spec["select"] == ["nu<=3", "d<=6"]
    from jetace.features import features_from_spec

    assert features_from_spec(sub.spec).feature_names == sub.feature_names


def test_lorentz_selection_and_metadata():
    full = LorentzACEFeatures(order=3, degree=6)
    sub = LorentzACEFeatures(order=3, degree=6, select="nu==2, l>=2")
    keep = [i for i, m in enumerate(full.column_meta) if m["nu"] == 2 and m["l"] >= 2]
    assert [full.feature_names[i] for i in keep] == sub.feature_names and keep
    p4, mask = pad(toy_jets(5, seed=3))
    assert_reproduced(sub(p4, mask), full(p4, mask)[:, keep], "selected Lorentz columns")


def test_selection_errors():
    with pytest.raises(ValueError, match="unknown column property 'q'.*nu, d"):
        parse_selection("q<=3", ["nu", "d"])
    with pytest.raises(ValueError, match="cannot read the selection 'd=<5'"):
        Selection.parse("d=<5")
    with pytest.raises(ValueError, match="keeps no column"):
        BIPFeatures(3, 6, select="d>99")
    assert Selection.parse("nu<=3 and d<=6").texts() == ["nu<=3", "d<=6"]
    assert Selection()({"nu": 9})  # no clause keeps everything
