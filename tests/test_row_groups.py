"""Output memory is flat (issue 18 point 6): the writer's row groups (Parquet) and
baskets (ROOT) have a fixed number of rows, whatever the compute batch size, so the
metadata the writer keeps until it closes does not grow with the number of batches."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot
from tolerances import assert_reproduced
from toyjets import toy_jets, write_jetclass

from jetace import outputs
from jetace.extract import write_features
from jetace.outputs import TableWriter

SPEC = {"family": "bip", "order": 2, "degree": 3, "max_particles": 16}
N = 230


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("groups")
    return str(write_jetclass(d / "in.root", toy_jets(N, seed=4, max_particles=20)))


@pytest.mark.parametrize("suffix", ["parquet", "root"])
def test_group_size_does_not_depend_on_the_batch_size(source, tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(outputs, "ROW_GROUP_BYTES", 4096)
    layouts, tables = {}, {}
    for batch in (17, 64, 4096):
        out = tmp_path / f"b{batch}.{suffix}"
        assert write_features(source, out, SPEC, batch_size=batch, step_size=50,
                              device="cpu", progress=False) == N
        if suffix == "parquet":
            meta = pq.ParquetFile(out).metadata
            layouts[batch] = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            table = pq.read_table(out)
            tables[batch] = {c: table.column(c).to_numpy() for c in table.column_names}
        else:
            with uproot.open(out) as f:
                tree = f["features"]
                layouts[batch] = [int(b) for b in np.diff(tree["jet_pt"].entry_offsets)]
                tables[batch] = tree.arrays(library="np")
    width = len(tables[17])
    group = layouts[17][0]
    assert 1 < group < N and len(layouts[17]) == -(-N // group)
    assert layouts[17] == layouts[64] == layouts[4096]
    assert all(g == group for g in layouts[17][:-1]) and sum(layouts[17]) == N
    assert width > 10
    for batch in (64, 4096):
        features = [c for c in tables[17] if c.startswith("bip_")]
        assert_reproduced(np.stack([tables[batch][c] for c in features], 1),
                          np.stack([tables[17][c] for c in features], 1), f"batch {batch}")
        np.testing.assert_array_equal(tables[batch]["jet_pt"], tables[17]["jet_pt"])


def test_rows_are_written_once_and_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "ROW_GROUP_BYTES", 80)  # 10 rows of one float64
    out = tmp_path / "t.parquet"
    with TableWriter(out) as writer:
        for a, b in ((0, 3), (3, 27), (27, 28), (28, 45)):
            writer.write({"x": np.arange(a, b, dtype=np.float64)})
        assert writer.group_rows == 10
    meta = pq.ParquetFile(out).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [10] * 4 + [5]
    np.testing.assert_array_equal(pq.read_table(out).column("x").to_numpy(), np.arange(45.0))
