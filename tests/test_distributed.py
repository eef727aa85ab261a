"""Tests of jetace.run.dask: features on a dask LocalCluster equal the single-process ones."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import uproot
from tolerances import assert_columns_reproduced
from toyjets import toy_jets, write_branches, write_jetclass

from jetace.cli import main
from jetace.errors import InputError, JetaceError
from jetace.extract import write_features
from jetace.io import JetFiles

distributed = pytest.importorskip("distributed", reason="needs the dask extra")
from jetace.run.dask import connect  # noqa: E402
from jetace.run.features import feature_blocks  # noqa: E402

SPEC = {"family": "bip", "order": 3, "degree": 6, "max_particles": 24}


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded workers on loopback, in this process (fast to start)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None, protocol="tcp",
                                      host="127.0.0.1") as c, \
                distributed.Client(c) as client:
            yield client


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dask")
    labels = {"label_Tbqq": True, "label_QCD": False}
    return [write_jetclass(tmp / f"in{i}.root", toy_jets(n, seed=i, max_particles=30), labels)
            for i, n in enumerate([70, 0, 45, 33])]


def _table(path):
    return pq.read_table(path)


@pytest.mark.reproducibility
@pytest.mark.parametrize("step_size,batch_size,max_jets", [(20, 8, None), ("2 kB", 16, 100),
                                                           ("100 MB", 4096, None)])
def test_dask_output_equals_single_process(cluster, inputs, tmp_path, step_size, batch_size,
                                           max_jets):
    kw = dict(step_size=step_size, batch_size=batch_size, max_jets=max_jets, device="cpu",
              progress=False)
    n1 = write_features(inputs, tmp_path / "single.parquet", SPEC, **kw)
    n2 = write_features(inputs, tmp_path / "dask.parquet", SPEC, dask=cluster, **kw)
    assert n1 == n2 == (148 if max_jets is None else max_jets)
    single, dask = _table(tmp_path / "single.parquet"), _table(tmp_path / "dask.parquet")
    assert single.column_names == dask.column_names
    assert single.schema.metadata == dask.schema.metadata
    assert_columns_reproduced(dask, single, "dask against one process")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dask.parquet", "single.parquet"]


def test_ranges_cover_every_jet_once_in_order(inputs):
    files = JetFiles(inputs, extras=False)
    ranges = [(files.files[i], a, b) for i, a, b in feature_blocks(files, rows=16,
                                                                   step_size=20)]
    by_file: dict[str, list[tuple[int, int]]] = {}
    for path, a, b in ranges:
        assert 0 < b - a <= 16
        by_file.setdefault(path, []).append((a, b))
    assert list(by_file) == [str(inputs[0]), str(inputs[2]), str(inputs[3])]
    for path, n in zip(files.files, files.num_entries, strict=True):
        if n == 0:
            assert path not in by_file
            continue
        spans = by_file[path]
        assert [a for a, _ in spans] == [0, *[b for _, b in spans[:-1]]]
        assert spans[-1][1] == n
    # blocks never straddle the reader's chunks
    chunks = files.ranges(20)
    for path, a, b in ranges:
        assert any(files.files[i] == path and s <= a and b <= e for i, s, e in chunks)


def test_dask_root_output_and_cli(cluster, inputs, tmp_path, capsys):
    out = tmp_path / "cli.root"
    rc = main(["features", *map(str, inputs), "-o", str(out), "--order", "3", "--degree", "6",
               "--max-particles", "24", "--device", "cpu", "--step-size", "25",
               "--dask", cluster.scheduler.address])
    assert rc == 0
    assert "wrote features of 148 jets" in capsys.readouterr().out
    write_features(inputs, tmp_path / "ref.root", SPEC, step_size=25, device="cpu",
                   progress=False)
    with uproot.open(out) as f, uproot.open(tmp_path / "ref.root") as g:
        got, ref = f["features"].arrays(library="np"), g["features"].arrays(library="np")
    assert_columns_reproduced(got, ref, "--dask ROOT output")


def test_dask_bad_files(cluster, inputs, tmp_path):
    bad = write_branches(tmp_path / "bad.root", {"jet_pt": np.ones(2, np.float32)})
    out = tmp_path / "f.parquet"
    with pytest.raises(InputError, match="bad.root.*part_px"):
        write_features([*inputs, bad], out, SPEC, dask=cluster, device="cpu",
                       progress=False)
    assert not out.exists()
    with pytest.warns(UserWarning, match="bad.root"):
        n = write_features([inputs[0], bad, inputs[2]], out, SPEC, dask=cluster,
                           device="cpu", progress=False, skip_bad=True)
    assert n == 70 + 45 and _table(out).num_rows == n
    # a problem found only in the data (here NaN momenta) on a worker stops the run
    counts = [2, 3]
    nan = write_branches(tmp_path / "nan.root", {
        name: __import__("awkward").unflatten(np.array([1, 2, np.nan, 4, 5], np.float32),
                                              counts)
        for name in ("part_px", "part_py", "part_pz", "part_energy")})
    out2 = tmp_path / "g.parquet"
    with pytest.raises(InputError, match="nan.root.*NaN or infinite.*jet entry 1"):
        write_features([nan], out2, SPEC, dask=cluster, device="cpu", progress=False)
    assert not out2.exists() and [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_connect_errors():
    with pytest.raises(JetaceError, match="invalid dask address"), connect(""):
        pass
    with pytest.raises(JetaceError, match="local:N needs N >= 1"), connect("local:0"):
        pass


@pytest.mark.slow
def test_cli_local_process_cluster(inputs, tmp_path, capsys):
    """`--dask local:2`: two worker processes started and stopped by the command."""
    args = ["features", *map(str, inputs), "--order", "3", "--degree", "6",
            "--max-particles", "24", "--device", "cpu", "--step-size", "40"]
    out, ref = tmp_path / "local.parquet", tmp_path / "ref.parquet"
    assert main([*args, "-o", str(out), "--dask", "local:2"]) == 0
    assert "wrote features of 148 jets" in capsys.readouterr().out
    assert main([*args, "-o", str(ref)]) == 0
    assert _table(out).equals(_table(ref))


class Scaled(torch.nn.Module):
    """BIP features times two: a module no spec rebuilds."""

    def __init__(self) -> None:
        super().__init__()
        from jetace.features import features_from_spec

        self.inner = features_from_spec(SPEC)
        self.num_features = self.inner.num_features

    def forward(self, p4, mask):
        return 2 * self.inner(p4, mask)


def test_dask_with_a_module_instance(cluster, inputs, tmp_path):
    """A module that no spec rebuilds is shipped to the workers as is."""
    kw = dict(step_size=30, batch_size=16, device="cpu", progress=False)
    write_features(inputs, tmp_path / "a.parquet", Scaled(), **kw)
    write_features(inputs, tmp_path / "b.parquet", Scaled(), dask=cluster, **kw)
    assert _table(tmp_path / "a.parquet").equals(_table(tmp_path / "b.parquet"))
