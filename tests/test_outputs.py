"""Outputs never replace inputs (issue 18 point 1): every command refuses an output
that is one of its inputs, after resolving links, before any work, and checks that the
output's directory exists and is writable before computing anything."""

from __future__ import annotations

import os

import pytest
from toyjets import toy_jets, write_jetclass

from jetace.cli import main
from jetace.errors import JetaceError
from jetace.outputs import check_outputs, same_file


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("outputs")
    a = write_jetclass(d / "a.root", toy_jets(12, seed=1))
    b = write_jetclass(d / "b.root", toy_jets(10, seed=2))
    model = d / "m.jetace"
    model.write_bytes(b"a model file that must stay as it is")
    (d / "link.root").symlink_to(a)
    os.link(a, d / "hard.root")
    return {"a": a, "b": b, "model": model, "dir": d}


def _commands(s, out):
    a, b, m = str(s["a"]), str(s["b"]), str(s["model"])
    return {
        "features": ["features", a, b, "-o", out],
        "predict": ["predict", m, a, "-o", out],
        "train": ["train", "--signal", a, "--background", b, "-o", out],
        "mix": ["mix", a, "--background", b, "--fraction", "0.5", "-n", "4", "-o", out],
        "export-onnx": ["export-onnx", m, "-o", out],
        "evaluate": ["evaluate", m, "--signal", a, "--background", b, "--plot", out],
    }


_CASES = [(c, alias) for c in ("features", "predict", "train", "mix", "evaluate")
          for alias in ("same", "symlink", "hardlink")]
_CASES += [(c, "model") for c in ("predict", "export-onnx", "evaluate")]


@pytest.mark.parametrize("command,alias", _CASES)
def test_output_that_is_an_input_is_refused(inputs, command, alias, capsys):
    target = {"same": inputs["a"], "symlink": inputs["dir"] / "link.root",
              "hardlink": inputs["dir"] / "hard.root", "model": inputs["model"]}[alias]
    before = {p: p.read_bytes() for p in (inputs["a"], inputs["b"], inputs["model"])}
    code = main(_commands(inputs, str(target))[command])
    err = capsys.readouterr().err
    assert code == 1
    assert "the output is one of the input files" in err and str(target) in err
    assert err.count("\n") == 1  # one line, no traceback
    assert {p: p.read_bytes() for p in before} == before


def test_generate_refuses_its_pythia_input_and_clashing_outputs(inputs, capsys):
    lhe = inputs["dir"] / "events.lhe"
    lhe.write_text("<LesHouchesEvents/>")
    code = main(["generate", "top", "-n", "5", "-o", str(lhe),
                 "--pythia", f"Beams:LHEF = {lhe}"])
    assert code == 1 and "the output is one of the input files" in capsys.readouterr().err
    assert lhe.read_text() == "<LesHouchesEvents/>"
    # --split: each worker file is checked as well
    out = inputs["dir"] / "gen.root"
    code = main(["generate", "top", "-n", "5", "-o", str(out), "--workers", "2", "--split",
                 "--pythia", f"Beams:LHEF = {inputs['dir'] / 'gen_1.root'}"])
    assert code == 1 and "gen_1.root" in capsys.readouterr().err


def test_missing_or_read_only_output_directory_fails_before_work(inputs, tmp_path, capsys,
                                                                monkeypatch):
    a, b = str(inputs["a"]), str(inputs["b"])
    code = main(["train", "--signal", a, "--background", b, "-o",
                 str(tmp_path / "missing" / "m.jetace")])
    err = capsys.readouterr().err
    assert code == 1 and "output directory" in err and "does not exist" in err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores the mode: deny as a read-only mount
            real = os.access
            monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) ==
                                str(locked) else real(p, mode))
        code = main(["features", a, "-o", str(locked / "f.parquet")])
        assert code == 1 and "permission denied" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
    code = main(["features", a, "-o", str(tmp_path)])
    assert code == 1 and "is a directory" in capsys.readouterr().err


def test_check_outputs_library(inputs, tmp_path):
    assert same_file(inputs["a"], inputs["dir"] / "hard.root")
    assert not same_file(inputs["a"], tmp_path / "new.root")
    check_outputs([tmp_path / "new.root", None], [inputs["a"], None])
    with pytest.raises(JetaceError, match="one of the input files"):
        check_outputs([inputs["a"]], [str(inputs["dir"] / "*.root")])
    with pytest.raises(JetaceError, match="two outputs"):
        check_outputs([tmp_path / "x.root", tmp_path / "." / "x.root"], [])


def test_library_writers_refuse_their_input(inputs):
    from jetace.extract import write_features
    from jetace.mix import mix_files

    a = inputs["a"]
    before = a.read_bytes()
    with pytest.raises(JetaceError, match="one of the input files"):
        write_features([str(a)], inputs["dir"] / "link.root", {"family": "bip", "order": 2,
                                                               "degree": 3})
    with pytest.raises(JetaceError, match="one of the input files"):
        mix_files(str(inputs["b"]), str(a), a, 0.5, 4)
    assert a.read_bytes() == before
