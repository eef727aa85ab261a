"""Fail early, say why, clean up (issue 18 points 8 and 9): inputs with different branch
sets are refused when first inspected, naming the file that differs; disk-full and
permission errors are one-line messages with nothing left behind; temporary files carry
the output's name and are removed on SIGTERM and by the next run; bad options give a
message, not a traceback; ``evaluate --json`` is strict JSON."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import torch
from toyjets import toy_jets, write_jetclass

from jetace.cli import main
from jetace.outputs import remove_stale_temporaries

FEATURES = ["--order", "2", "--degree", "3", "--max-particles", "16", "--quiet"]
TOP = {"label_Tbqq": True, "label_QCD": False}
QCD = {"label_Tbqq": False, "label_QCD": True}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("early")
    return {"sig": str(write_jetclass(d / "sig.root", toy_jets(30, seed=1, n_prongs=3), TOP)),
            "bkg": str(write_jetclass(d / "bkg.root", toy_jets(30, seed=2), QCD)),
            "other": str(write_jetclass(d / "other.root", toy_jets(10, seed=3),
                                        {"label_QCD": True})),
            "dir": d}


def _hidden(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_different_branch_sets_are_found_at_inspection(files, tmp_path, capsys):
    out = tmp_path / "f.parquet"
    argv = ["features", files["sig"], files["other"], "-o", str(out), *FEATURES]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "other.root: tree 'tree': its jet and label branches differ from those of" in err
    assert "sig.root" in err and "missing: ['label_Tbqq']" in err and not out.exists()
    assert main([*argv, "--skip-bad"]) == 0
    assert "other.root" in capsys.readouterr().err
    assert pq.read_table(out).num_rows == 30


def test_disk_full_is_reported_and_nothing_is_left(files, tmp_path, capsys, monkeypatch):
    import pyarrow.parquet

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path))

    monkeypatch.setattr(pyarrow.parquet.ParquetWriter, "write_table", full)
    out = tmp_path / "f.parquet"
    assert main(["features", files["sig"], "-o", str(out), *FEATURES]) == 1
    err = capsys.readouterr().err
    assert "no space left on device (the disk is full)" in err and err.count("\n") == 1
    assert not out.exists() and _hidden(tmp_path) == []
    monkeypatch.undo()
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: (open(f, "wb").write(b"x"),
                                                                 full(None))[1])
    model = tmp_path / "m.jetace"
    assert main(["train", "--signal", files["sig"], "--background", files["bkg"], "-o",
                 str(model), *FEATURES]) == 1
    assert "the disk is full" in capsys.readouterr().err
    assert not model.exists() and _hidden(tmp_path) == []


def test_stale_temporaries_of_the_output_are_removed(files, tmp_path):
    out = tmp_path / "f.parquet"
    dead = tmp_path / ".f.parquet.999999999.0a1b2c3d.tmp"  # no such process
    alive = tmp_path / f".f.parquet.{os.getppid()}.0a1b2c3d.tmp"  # a running process
    unrelated = tmp_path / ".g.parquet.999999999.0a1b2c3d.tmp"
    for p in (dead, alive, unrelated):
        p.write_bytes(b"partial")
    assert main(["features", files["sig"], "-o", str(out), *FEATURES]) == 0
    assert not dead.exists() and alive.exists() and unrelated.exists() and out.exists()
    assert remove_stale_temporaries(tmp_path / "g.parquet") == [unrelated]


_SLOW_RUN = """
import sys, time
import jetace.extract as extract
from jetace.cli import main
inner = extract._host_pieces
def slow(chunks):
    for piece in inner(chunks):
        time.sleep(0.2)
        yield piece
extract._host_pieces = slow
extract.WRITE_ROWS = 1  # every slow piece written as it comes
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_removes_the_temporary_output(files, tmp_path):
    out = tmp_path / "f.parquet"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, "features", files["sig"],
                             files["bkg"], "-o", str(out), "--batch-size", "2", *FEATURES],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _hidden(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    temporary = _hidden(tmp_path)
    assert temporary and temporary[0].startswith(".f.parquet.")  # carries the output name
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert _hidden(tmp_path) == [] and not out.exists()


def test_bad_options_give_messages_not_tracebacks(files, tmp_path, capsys):
    base = ["train", "--signal", files["sig"], "--background", files["bkg"], "-o",
            str(tmp_path / "m.jetace")]
    for option in (["--C", "abc"], ["--C", "-1"], ["--hidden", "16,x"]):
        with pytest.raises(SystemExit) as stop:
            main([*base, *option])
        assert stop.value.code == 2 and option[1] in capsys.readouterr().err
    assert main(["features", files["sig"], "-o", str(tmp_path / "f.parquet"), "--order", "0",
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "invalid feature options" in err and "order" in err and err.count("\n") == 1


def test_evaluate_json_is_strict(files, tmp_path, capsys, monkeypatch):
    import jetace.metrics

    model = tmp_path / "m.jetace"
    assert main(["train", "--signal", files["sig"], "--background", files["bkg"], "-o",
                 str(model), *FEATURES]) == 0
    capsys.readouterr()
    real = jetace.metrics.binary_metrics
    # a background that no cut at 30% signal efficiency lets through: rejection infinite
    monkeypatch.setattr(jetace.metrics, "binary_metrics",
                        lambda *a, **k: {**real(*a, **k), "rejection_at_0.3": float("inf")})
    assert main(["evaluate", str(model), "--signal", files["sig"], "--background",
                 files["bkg"], "--json", "--quiet"]) == 0

    def refuse(constant):
        raise AssertionError(f"not JSON: {constant}")

    metrics = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert metrics["rejection_at_0.3"] is None and metrics["auc"] > 0.5


def test_mix_of_sets_with_different_branches_is_refused(files, tmp_path, capsys):
    out = tmp_path / "mix.root"
    assert main(["mix", files["sig"], "--background", files["other"], "--fraction", "0.5",
                 "-n", "10", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "hold different branches" in err and "other.root" in err and not out.exists()
