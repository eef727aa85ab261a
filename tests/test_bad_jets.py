"""Bad jets at the command level (issue 17 point 6): a jet with overflowing, NaN or
unphysical momenta stops every command with its file, entry and reason, or with
--skip-bad-jets is left out, counted and listed at the end; features and predict never
write a NaN or an infinity."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from toyjets import toy_jets, write_jetclass

from jetace.cli import main
from jetace.errors import InputError
from jetace.extract import write_features
from jetace.io import MAX_MOMENTUM, read_jets
from jetace.run.features import iter_features

FEATURES = ["--order", "2", "--degree", "3", "--max-particles", "16", "--quiet"]
TOP = {"label_Tbqq": True, "label_QCD": False}
QCD = {"label_Tbqq": False, "label_QCD": True}
N, BAD = 20, 13


def _with(jets, entry: int, row: int, column: int, value: float):
    jets = [j.copy() for j in jets]
    jets[entry][row, column] = value
    return jets


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("badjets")
    sig, bkg = toy_jets(N, seed=1, n_prongs=3), toy_jets(N, seed=2)
    out = {"sig": write_jetclass(d / "sig.root", sig, TOP),
           "bkg": write_jetclass(d / "bkg.root", bkg, QCD),
           # px = 1e20 GeV: finite in float32, its square is not
           "huge": write_jetclass(d / "huge.root", _with(bkg, BAD, 0, 1, 1e20), QCD),
           "nan": write_jetclass(d / "nan.root", _with(bkg, BAD, 2, 3, np.nan), QCD),
           "negative": write_jetclass(d / "negative.root", _with(bkg, BAD, 1, 0, -5.0), QCD),
           "dir": d}
    model = d / "m.jetace"
    assert main(["train", "--signal", str(out["sig"]), "--background", str(out["bkg"]),
                 "-o", str(model), *FEATURES]) == 0
    out["model"] = model
    return out


REASONS = {"huge": f"beyond {MAX_MOMENTUM:.0e} GeV", "nan": "NaN or infinite",
           "negative": "negative energy"}


def _commands(files, bad, out):
    sig, model = str(files["sig"]), str(files["model"])
    return {
        "features": ["features", bad, "-o", str(out / "f.parquet"), *FEATURES],
        "predict": ["predict", model, bad, "-o", str(out / "s.parquet"), "--quiet"],
        "train": ["train", "--signal", sig, "--background", bad, "-o", str(out / "m2.jetace"),
                  *FEATURES],
        "evaluate": ["evaluate", model, "--signal", sig, "--background", bad, "--json"],
    }


@pytest.mark.parametrize("kind", ["huge", "nan", "negative"])
@pytest.mark.parametrize("command", ["features", "predict", "train", "evaluate"])
def test_bad_jet_stops_the_command_naming_file_entry_and_reason(files, kind, command,
                                                                 tmp_path, capsys):
    code = main(_commands(files, str(files[kind]), tmp_path)[command])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{kind}.root" in err and f"jet entry {BAD}" in err and REASONS[kind] in err
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_skip_bad_jets_leaves_them_out_and_lists_them(files, workers, tmp_path, capsys):
    bad = str(files["huge"])
    argv = _commands(files, bad, tmp_path)
    extra = ["--skip-bad-jets", "--workers", workers]
    assert main([*argv["features"], *extra]) == 0
    captured = capsys.readouterr()
    assert f"wrote features of {N - 1} jets" in captured.out
    assert "left out 1 bad jet(s)" in captured.err
    assert f"huge.root: jet entry {BAD}: branch 'part_px'" in captured.err
    table = pq.read_table(tmp_path / "f.parquet")
    want = np.delete(read_jets(str(files["bkg"])).jet.pt.to_numpy(), BAD)
    np.testing.assert_array_equal(table.column("jet_pt").to_numpy(), want)
    bip = [c for c in table.column_names if c.startswith("bip_")]
    assert np.isfinite(np.stack([table.column(c).to_numpy() for c in bip])).all()
    assert main([*argv["predict"], *extra]) == 0
    captured = capsys.readouterr()
    assert f"wrote scores of {N - 1} jets" in captured.out and f"entry {BAD}" in captured.err
    assert np.isfinite(pq.read_table(tmp_path / "s.parquet").column("score").to_numpy()).all()
    assert main([*argv["train"], *extra]) == 0
    assert f"entry {BAD}" in capsys.readouterr().err
    assert main([*argv["evaluate"], *extra]) == 0
    assert f"entry {BAD}" in capsys.readouterr().err


class _Power(torch.nn.Module):
    """A feature that overflows float32 for a jet with a large (allowed) energy."""

    spec = {"family": "power", "max_particles": 16}
    num_features = 2
    feature_names = ["e10", "e1"]

    def forward(self, p4, mask):
        energy = (p4[..., 0] * mask).sum(1)
        return torch.stack([energy ** 10, energy], dim=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_non_finite_features_are_never_yielded_or_written(files, tmp_path, workers):
    jets = _with(toy_jets(N, seed=2), BAD, 0, 0, 1e6)  # within the limit; E^10 overflows
    path = write_jetclass(tmp_path / "big.root", jets, QCD)
    kw = {"device": "cpu", "progress": False, "workers": workers, "batch_size": 8}
    with pytest.raises(InputError, match=rf"big.root: jet entry {BAD}: its features are NaN "
                                         "or infinite"):
        list(iter_features(str(path), _Power(), **kw))
    out = tmp_path / "f.parquet"
    with pytest.raises(InputError, match=f"jet entry {BAD}"):
        write_features(str(path), out, _Power(), **kw)
    assert not out.exists()
    bad: list = []
    assert write_features(str(path), out, _Power(), bad_jets=bad, **kw) == N - 1
    assert [(p, e) for p, e, _ in bad] == [(str(path), BAD)]
    assert np.isfinite(pq.read_table(out).column("power_e10").to_numpy()).all()
