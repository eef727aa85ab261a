"""Tests of jetace.extract: features chunk by chunk, feature tables, the features command."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import uproot
from tolerances import assert_reproduced
from toyjets import toy_jets, write_branches, write_jetclass

import jetace.features
from jetace.cli import main
from jetace.errors import InputError, JetaceError
from jetace.extract import write_features
from jetace.io import read_jets, to_padded
from jetace.outputs import TableWriter, feature_columns, jet_columns
from jetace.run import features as features_run
from jetace.run.executor import prefetch
from jetace.run.features import iter_features
from jetace.run.options import resolve_device


class StandIn(torch.nn.Module):
    """A small feature module with the interface of the real families.

    Features: per jet, sum of E, px, py, pz over real constituents, the multiplicity, and
    the energy of the padded slot 2 (so padding and ordering matter).
    """

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.num_features = 6
        self.spec = {"family": "toy", "scale": 1.0}
        self.feature_names = ["sum(E)", "sum(px)", "sum(py)", "sum(pz)", "n-const", "E[2]"]
        self.fail_after = fail_after
        self.calls = 0

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("stand-in failure")
        sums = (p4 * mask[..., None]).sum(1)
        return torch.cat([sums, mask.sum(1, keepdim=True).to(p4.dtype), p4[:, 2, :1]], dim=1)


@pytest.fixture
def files(tmp_path):
    sets = [toy_jets(n, seed=s, max_particles=40) for n, s in [(30, 1), (0, 2), (25, 3)]]
    labels = [{"label_Tbqq": True, "label_QCD": False}, {"label_Tbqq": True, "label_QCD": False},
              {"label_Tbqq": False, "label_QCD": True}]
    paths = [write_jetclass(tmp_path / f"in{i}.root", js, lab)
             for i, (js, lab) in enumerate(zip(sets, labels, strict=True))]
    return paths


def _reference(paths, max_particles=16):
    jets = read_jets(paths)
    p4, mask = to_padded(jets, max_particles=max_particles)
    return jets, StandIn()(p4, mask)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(JetaceError, match="invalid device"):
        resolve_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(JetaceError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.reproducibility
@pytest.mark.parametrize("step_size,batch_size,max_bytes",
                         [(7, 3, None), (100, 4096, None), ("100 MB", 10, None),
                          ("100 MB", 4, 6 * 4 * 8), ("100 MB", 4, 1)])
def test_iter_features_every_jet_in_order(files, monkeypatch, step_size, batch_size, max_bytes):
    if max_bytes is not None:  # features of 8 jets (2 batches) or 1 batch per yield
        monkeypatch.setattr(features_run, "MAX_FEATURE_BYTES", max_bytes)
    jets, ref = _reference(files)
    got_jets, got = [], []
    for chunk, feats in iter_features(files, StandIn(), step_size=step_size,
                                      batch_size=batch_size, device="cpu", progress=False,
                                      max_particles=16):
        assert feats.shape == (len(chunk), 6) and feats.dtype == torch.float32
        if max_bytes is not None:
            assert len(chunk) <= max(max_bytes // 24, batch_size)
        got_jets.append(chunk)
        got.append(feats)
    assert_reproduced(torch.cat(got), ref, f"step {step_size}, batch {batch_size}")
    np.testing.assert_array_equal(ak.concatenate(got_jets).jet.pt, jets.jet.pt)


def test_iter_features_builds_module_from_spec(files, monkeypatch):
    seen = {}

    def fake(spec):
        seen.update(spec)
        return StandIn()

    monkeypatch.setattr(jetace.features, "features_from_spec", fake)
    spec = {"family": "toy", "order": 2, "max_particles": 16}
    out = torch.cat([f for _, f in iter_features(files, spec, device="cpu", progress=False,
                                                 dtype=torch.float64, max_jets=40)])
    assert seen == spec
    _, ref = _reference(files)
    assert out.dtype == torch.float64 and out.shape == (40, 6)
    torch.testing.assert_close(out.float(), ref[:40])


def test_jet_columns_names_and_values(files, tmp_path):
    jets = read_jets(files)
    cols = jet_columns(jets)
    assert list(cols) == ["jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_nparticles",
                          "label_Tbqq", "label_QCD"]
    np.testing.assert_array_equal(cols["jet_pt"], np.asarray(jets.jet.pt))
    assert cols["label_QCD"].dtype == bool and cols["label_QCD"].sum() == 25
    # a stored jet energy beside the jet mass comes back under its input name, bit for bit
    e = np.array([1000.25, 2000.5], np.float32)
    path = write_branches(tmp_path / "m.root", {
        "part_px": ak.Array([[1.0], [2.0]]), "part_py": ak.Array([[1.0], [2.0]]),
        "part_pz": ak.Array([[1.0], [2.0]]), "part_energy": ak.Array([[3.0], [4.0]]),
        "jet_pt": np.ones(2, np.float32), "jet_eta": np.zeros(2, np.float32),
        "jet_phi": np.zeros(2, np.float32), "jet_energy": e,
        "jet_mass": np.full(2, 80, np.float32)})
    cols = jet_columns(read_jets(path))
    assert set(cols) == {"jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_mass"}
    np.testing.assert_array_equal(cols["jet_energy"], e)


def test_feature_columns_valid_unique_names():
    names = feature_columns(StandIn())
    assert names == ["toy_sum_E", "toy_sum_px", "toy_sum_py", "toy_sum_pz", "toy_nmconst",
                     "toy_E_2"]
    module = StandIn()
    module.feature_names = ["a b", "a-b", "a_b", "a b"]
    module.num_features = 4
    names = feature_columns(module, "bip")
    assert len(set(names)) == 4 and all(n.isidentifier() for n in names)
    module.feature_names = ["bip_k0", "k1", "bip_k0"]
    module.num_features = 3
    assert feature_columns(module, "bip") == ["bip_k0", "bip_k1", "bip_k0_1"]
    module.num_features = 4
    del module.feature_names
    assert feature_columns(module, "bip") == ["bip_0", "bip_1", "bip_2", "bip_3"]


@pytest.mark.parametrize("suffix", [".parquet", ".root"])
def test_write_features_round_trip(files, tmp_path, suffix):
    out = tmp_path / f"features{suffix}"
    n = write_features(files, out, _spec_module(16), step_size=9, batch_size=4, device="cpu",
                       progress=False)
    jets, ref = _reference(files)
    assert n == len(jets) == 55
    if suffix == ".parquet":
        table = pq.read_table(out)
        data = {k: table[k].to_numpy() for k in table.column_names}
        spec = json.loads(table.schema.metadata[b"jetace_spec"])
    else:
        with uproot.open(out) as f:
            data = f["features"].arrays(library="np")
            spec = json.loads(str(f["jetace_spec"]))
    names = feature_columns(StandIn())
    assert list(data)[: len(names)] == names
    assert spec["family"] == "toy" and spec["max_particles"] == 16
    got = np.stack([data[k] for k in names], axis=1)
    assert_reproduced(got, ref.numpy(), suffix)
    np.testing.assert_array_equal(data["jet_pt"], np.asarray(jets.jet.pt))
    np.testing.assert_array_equal(data["label_Tbqq"], np.asarray(jets.label_Tbqq))
    assert data["label_Tbqq"].dtype == bool and data["label_Tbqq"].sum() == 30
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _spec_module(max_particles):
    module = StandIn()
    module.spec = {**module.spec, "max_particles": max_particles}
    return module


@pytest.mark.parametrize("suffix", [".parquet", ".root"])
def test_interrupted_run_leaves_no_file(files, tmp_path, suffix):
    out = tmp_path / f"f{suffix}"
    with pytest.raises(RuntimeError, match="stand-in failure"):
        write_features(files, out, StandIn(fail_after=3), step_size=5, batch_size=5,
                       device="cpu", progress=False)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # an existing output is left untouched by a failed run
    out.write_text("old")
    with pytest.raises(RuntimeError):
        write_features(files, out, StandIn(fail_after=1), step_size=5, device="cpu",
                       progress=False)
    assert out.read_text() == "old"


def test_bad_input_file_stops_before_writing(files, tmp_path):
    bad = write_branches(tmp_path / "bad.root", {"jet_pt": np.ones(2, np.float32)})
    out = tmp_path / "f.parquet"
    module = StandIn()
    with pytest.raises(InputError, match="bad.root.*part_px"):
        write_features([*files, bad], out, module, device="cpu", progress=False)
    assert module.calls == 0 and not out.exists()


def test_table_writer_errors(tmp_path):
    with pytest.raises(JetaceError, match="unknown output format '.csv'"):
        TableWriter(tmp_path / "f.csv")
    with pytest.raises(JetaceError, match="does not exist"):
        TableWriter(tmp_path / "nodir" / "f.parquet")
    with pytest.raises(JetaceError, match="equal length"), \
            TableWriter(tmp_path / "f.parquet") as w:
        w.write({"a": np.zeros(3), "b": np.zeros(2)})
    assert not (tmp_path / "f.parquet").exists()
    with pytest.raises(JetaceError, match=r"columns changed.*missing \['a'\], new \['b'\]"), \
            TableWriter(tmp_path / "f.root") as w:
        w.write({"a": np.zeros(3)})
        w.write({"b": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_write_features_empty_input(tmp_path):
    empty = write_jetclass(tmp_path / "empty.root", [], {"label_QCD": True})
    out = tmp_path / "f.parquet"
    assert write_features(empty, out, StandIn(), device="cpu", progress=False) == 0
    table = pq.read_table(out)
    assert table.num_rows == 0
    assert "toy_sum_E" in table.column_names and "label_QCD" in table.column_names


def test_cli_features_end_to_end(files, tmp_path, monkeypatch, capsys):
    specs = []

    def fake(spec):
        specs.append(spec)
        return StandIn()

    monkeypatch.setattr(jetace.features, "features_from_spec", fake)
    out = tmp_path / "cli.parquet"
    pattern = str(tmp_path / "in*.root")
    rc = main(["features", pattern, "-o", str(out), "--order", "3", "--degree", "6",
               "--max-particles", "16", "--device", "cpu", "--step-size", "11",
               "--batch-size", "8"])
    assert rc == 0
    assert "wrote features of 55 jets" in capsys.readouterr().out
    assert specs[0] == {"family": "bip", "order": 3, "degree": 6, "max_particles": 16}
    table = pq.read_table(out)
    _, ref = _reference(sorted(tmp_path.glob("in*.root")))
    got = np.stack([table[k].to_numpy() for k in feature_columns(StandIn())], axis=1)
    assert_reproduced(got, ref.numpy(), "jetace features")
    # a bad input: exit status 1, the message names the file, no output
    rc = main(["features", str(tmp_path / "missing.root"), "-o", str(tmp_path / "x.root"),
               "--device", "cpu"])
    assert rc == 1
    assert "missing.root: file does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.root").exists()


def test_cli_features_skip_bad(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(jetace.features, "features_from_spec", lambda spec: StandIn())
    bad = write_branches(tmp_path / "bad.root", {"jet_pt": np.ones(2, np.float32)})
    out = tmp_path / "skip.root"
    args = ["features", *map(str, files), str(bad), "-o", str(out), "--device", "cpu"]
    assert main(args) == 1
    assert "bad.root" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "wrote features of 55 jets" in captured.out
    assert "warning: skipping bad input file" in captured.err and "bad.root" in captured.err
    with uproot.open(out) as f:
        assert f["features"].num_entries == 55


def test_data_error_in_later_file_stops_run_even_with_skip_bad(files, tmp_path):
    """Problems seen only in the data (not in the metadata checks) stop the run, with or
    without skip_bad: jets already computed are never written as a complete output."""
    jets = toy_jets(3, seed=5)
    jets[1][0, 3] = np.inf  # pz of jet entry 1; the file has the same branches as the others
    nan = write_jetclass(tmp_path / "inf.root", jets, {"label_Tbqq": False, "label_QCD": True})
    out = tmp_path / "f.parquet"
    for skip_bad in (False, True):
        with pytest.raises(InputError, match="inf.root.*'part_pz'.*jet entry 1"):
            write_features([*files, nan], out, StandIn(), device="cpu", progress=False,
                           skip_bad=skip_bad)
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_chunk_features_batches_and_empty(files):
    jets = read_jets(files)
    module = StandIn()
    with torch.no_grad():
        out = features_run.chunk_features(module, jets, max_particles=16,
                                          device=torch.device("cpu"), batch_size=7)
    assert module.calls == -(-len(jets) // 7)
    assert_reproduced(out, _reference(files)[1], "batches of 7")
    empty = features_run.chunk_features(StandIn(), jets[:0], max_particles=16,
                                   device=torch.device("cpu"))
    assert empty.shape == (0, 6)
    # the pad-ahead pipeline of the CUDA path (helper thread), here on the CPU
    with torch.no_grad():
        ahead = features_run.chunk_features(StandIn(), jets, max_particles=16,
                                       device=torch.device("cpu"), batch_size=7, prefetch=True)
        one = features_run.chunk_features(StandIn(), jets[:3], max_particles=16,
                                     device=torch.device("cpu"), batch_size=7, prefetch=True)
    assert torch.equal(ahead, out) and torch.equal(one, out[:3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("batch_size", [7, 4096])
def test_cuda_pipeline_matches_cpu(files, batch_size):
    """The CUDA path (pinned host buffers, non-blocking copies, padding one batch ahead in
    a helper thread) gives the CPU features, in order."""
    from jetace.features import features_from_spec

    spec = {"family": "bip", "order": 3, "degree": 6, "max_particles": 32}
    kw = dict(step_size=20, batch_size=batch_size, dtype=torch.float64, progress=False)
    cpu = torch.cat([f for _, f in iter_features(files, spec, device="cpu", **kw)])
    got = [f for _, f in iter_features(files, spec, device="cuda", **kw)]
    assert all(f.device.type == "cuda" for f in got)
    assert_reproduced(torch.cat(got).cpu(), cpu, "CUDA pipeline")
    assert resolve_device("auto").type == "cuda"
    module = features_from_spec(spec).cuda()
    jets = read_jets(files)
    with torch.no_grad():
        out = features_run.chunk_features(module, jets, max_particles=32,
                                     device=torch.device("cuda"), dtype=torch.float64,
                                     batch_size=batch_size)
    assert_reproduced(out.cpu(), cpu, "CUDA chunk_features")


def test_iter_features_leaves_grad_mode_alone(files):
    it = iter_features(files, _spec_module(16), device="cpu", progress=False, step_size=10)
    chunk, feats = next(it)
    assert torch.is_grad_enabled() and not feats.requires_grad
    it.close()


def test_write_features_keeps_jets_without_constituents(tmp_path):
    jets = toy_jets(5, seed=2, max_particles=30)
    jets[2] = np.zeros((0, 4))
    path = write_jetclass(tmp_path / "z.root", jets)
    out = tmp_path / "z.parquet"
    assert write_features(path, out, _spec_module(16), device="cpu", progress=False) == 5
    table = pq.read_table(out)
    assert table["toy_nmconst"].to_pylist() == [min(len(j), 16) for j in jets]
    assert table["toy_sum_E"][2].as_py() == 0


@pytest.mark.parametrize("depth", [1, 3])
def test_read_ahead_order_errors_and_close(depth):
    assert list(prefetch(iter(range(5)), depth)) == list(range(5))
    assert list(prefetch(iter([]), depth)) == []

    def failing():
        yield "a"
        raise InputError("broken chunk")

    seen = []
    with pytest.raises(InputError, match="broken chunk"):
        for item in prefetch(failing(), depth):
            seen.append(item)
    assert seen == ["a"]  # the error comes at the item that failed, not before

    closed = []

    def source():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    gen = prefetch(source(), depth)
    assert next(gen) == 0
    gen.close()
    assert closed == [True]
