"""A writing command killed outright (SIGKILL, as the out-of-memory killer does) leaves no
output that looks complete, and a file already at the output's name untouched
(issue 19 point 3): every table goes through :class:`jetace.outputs.TableWriter`, which
writes under a temporary name and renames at the end. The next run over the same output
removes the killed run's temporary file and writes a complete output.

Each command runs in a subprocess whose writer stops (sleeps) after its first row group,
with row groups of a few rows so that this is halfway through the table; the test kills
it there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import uproot
from toyjets import toy_jets, write_jetclass

from jetace.cli import main

FEATURES = ["--order", "2", "--degree", "3", "--max-particles", "16", "--quiet"]
TOP = {"label_Tbqq": True, "label_QCD": False}
QCD = {"label_Tbqq": False, "label_QCD": True}
OLD = b"an earlier output that must survive"

_STOP_AFTER_FIRST_GROUP = """
import os, sys, time
from jetace import outputs
from jetace.cli import main
outputs.ROW_GROUP_BYTES = 64
append = outputs.TableWriter._append
def stop(self, arrays):
    append(self, arrays)
    open(os.environ["JETACE_TEST_MARK"], "w").close()
    time.sleep(600)
outputs.TableWriter._append = stop
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("kill")
    sig = str(write_jetclass(d / "sig.root", toy_jets(40, seed=1, n_prongs=3), TOP))
    bkg = str(write_jetclass(d / "bkg.root", toy_jets(40, seed=2), QCD))
    model = str(d / "m.jetace")
    assert main(["train", "--signal", sig, "--background", bkg, "-o", model, *FEATURES]) == 0
    return {"sig": sig, "bkg": bkg, "model": model}


def _argv(command, inputs, out):
    if command == "features":
        return ["features", inputs["sig"], inputs["bkg"], "-o", out, *FEATURES]
    if command == "predict":
        return ["predict", inputs["model"], inputs["sig"], inputs["bkg"], "-o", out, "--quiet"]
    if command == "mix":
        return ["mix", inputs["sig"], "--background", inputs["bkg"], "--fraction", "0.5",
                "-n", "60", "-o", out]
    return ["generate", "top", "-n", "12", "-o", out, "--seed", "5", "--quiet"]


def _hidden(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("command", ["features", "predict", "mix", "generate"])
@pytest.mark.parametrize("existing", [True, False], ids=["existing", "absent"])
def test_sigkill_leaves_no_complete_looking_output(inputs, tmp_path, command, existing):
    if command == "generate":
        pytest.importorskip("pythia8mc")
        pytest.importorskip("fastjet")
    suffix = ".parquet" if command in ("features", "predict") else ".root"
    out = tmp_path / f"out{suffix}"
    if existing:
        out.write_bytes(OLD)
    mark = tmp_path / "mark"
    proc = subprocess.Popen([sys.executable, "-c", _STOP_AFTER_FIRST_GROUP,
                             *_argv(command, inputs, str(out))],
                            env={**os.environ, "JETACE_TEST_MARK": str(mark)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mark.exists(), f"{command} ended before writing a row group: {proc.stderr.read()}"
    temporary = _hidden(tmp_path)
    assert len(temporary) == 1 and temporary[0].startswith(f".{out.name}.")
    assert os.path.getsize(tmp_path / temporary[0]) > 0  # a row group written into it
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    if existing:
        assert out.read_bytes() == OLD
    else:
        assert not out.exists()
    assert _hidden(tmp_path) == temporary  # nobody could clean up after SIGKILL
    # the next run over the same output removes the dead run's file and completes
    assert main(_argv(command, inputs, str(out))) == 0
    assert _hidden(tmp_path) == []
    if suffix == ".root":
        with uproot.open(out) as f:
            assert f["tree"].num_entries == (60 if command == "mix" else 12)
    else:
        import pyarrow.parquet as pq

        assert pq.read_table(out).num_rows == 80
