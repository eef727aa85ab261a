"""Worker processes (jetace.run.workers, ``--workers``): the same features and scores as one
process, jet for jet, in input order; errors of a worker reach the caller."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import signal
import time

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from tolerances import METRIC_RTOL, assert_columns_reproduced, assert_reproduced
from toyjets import toy_jets, write_jetclass

from jetace.cli import main
from jetace.errors import InputError, JetaceError
from jetace.io import JetFiles, read_jets
from jetace.run.features import feature_blocks, iter_features
from jetace.run.workers import WorkerDied, map_blocks

SPEC = {"family": "bip", "order": 3, "degree": 5, "mirror": True, "max_particles": 32}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("parallel")
    sets = [(toy_jets(23, seed=1, n_prongs=3), True), (toy_jets(0, seed=2), True),
            (toy_jets(31, seed=3), False), (toy_jets(9, seed=4, n_prongs=2), False)]
    return [str(write_jetclass(d / f"in{i}.root", jets, {"label_Tbqq": top, "label_QCD": not top}))
            for i, (jets, top) in enumerate(sets)]


def _features(files, **kw):
    chunks = list(iter_features(files, SPEC, device="cpu", progress=False, **kw))
    return [c for c, _ in chunks], torch.cat([f for _, f in chunks])


def _two_columns(feats: torch.Tensor) -> np.ndarray:
    return (feats[:, 0] * 2 + feats[:, -1]).numpy()  # elementwise: no reduction order


@pytest.mark.reproducibility
@pytest.mark.parametrize("step_size,batch_size", [(10, 4), ("100 MB", 8), (5, 4096)])
def test_workers_give_the_same_features_in_order(files, step_size, batch_size):
    jets = read_jets(files)
    one_chunks, one = _features(files, step_size=step_size, batch_size=batch_size)
    two_chunks, two = _features(files, step_size=step_size, batch_size=batch_size, workers=2)
    assert two.shape == (len(jets), 97)
    assert_reproduced(two, one, "--workers 2 against one process")
    merged = ak.concatenate(two_chunks)
    assert "constituents" not in ak.fields(merged)
    np.testing.assert_array_equal(merged.jet.pt, jets.jet.pt)
    np.testing.assert_array_equal(merged.label_Tbqq, jets.label_Tbqq)
    # the transform runs in the workers: only its output comes back
    got = [s for _, s in iter_features(files, SPEC, device="cpu", progress=False, workers=3,
                                       step_size=step_size, batch_size=batch_size,
                                       transform=_two_columns)]
    assert all(isinstance(s, np.ndarray) for s in got)
    assert_reproduced(np.concatenate(got)[:, None], _two_columns(one)[:, None], "transform")


def test_map_blocks_order_window_and_early_close(files):
    jf = JetFiles(files, extras=False)
    blocks = feature_blocks(jf, 4, step_size=4)
    assert sum(b - a for _, a, b in blocks) == jf.num_jets and len(blocks) > 8
    got = list(map_blocks(jf, blocks, len, workers=2))
    assert [n for _, _, n in got] == [b - a for _, a, b in blocks]
    gen = map_blocks(jf, blocks, len, workers=2)
    next(gen)
    gen.close()  # stops the workers; nothing left running
    with pytest.raises(ValueError, match="at least one worker"):
        next(map_blocks(jf, blocks, len, workers=0))


def test_worker_error_names_file_and_jet(files, tmp_path):
    jets = toy_jets(3, seed=5)
    jets[1][0, 2] = np.nan  # py of jet entry 1; the same branches as the other files
    bad = write_jetclass(tmp_path / "nan.root", jets, {"label_Tbqq": False, "label_QCD": True})
    with pytest.raises(InputError, match=r"nan.root.*'part_py'.*jet entry 1"):
        _features([*files, str(bad)], workers=2)
    with pytest.raises(JetaceError, match="at least one worker"):
        _features(files, workers=0)


@pytest.mark.slow
def test_cli_workers_same_outputs(files, tmp_path, capsys):
    feats = {}
    for w in ("1", "2"):
        out = tmp_path / f"f{w}.parquet"
        assert main(["features", *files, "-o", str(out), "--order", "3", "--degree", "5",
                     "--mirror", "--max-particles", "32", "--device", "cpu", "--quiet",
                     "--workers", w]) == 0
        feats[w] = pq.read_table(out)
    assert len(feats["1"]) == 63
    assert_columns_reproduced(feats["2"], feats["1"], "features --workers 2")
    model = tmp_path / "m.jetace"
    top, qcd = [files[0], files[3]], [files[2]]
    assert main(["train", "--signal", *top, "--background", *qcd, "-o", str(model),
                 "--order", "2", "--degree", "4", "--quiet", "--workers", "2"]) == 0
    scores = {}
    for w in ("1", "2"):
        out = tmp_path / f"s{w}.parquet"
        assert main(["predict", str(model), *files, "-o", str(out), "--quiet",
                     "--workers", w]) == 0
        scores[w] = pq.read_table(out)
        assert main(["evaluate", str(model), "--signal", *top, "--background", *qcd,
                     "--json", "--quiet", "--workers", w]) == 0
        scores[f"eval{w}"] = json.loads(capsys.readouterr().out.splitlines()[-1])
    # features equal to rounding, so scores too; metrics within the scores' rounding
    assert_columns_reproduced(scores["2"], scores["1"], "predict --workers 2")
    # strict JSON: an infinite rejection is null in both
    assert {k for k, v in scores["eval1"].items() if v is None} == \
        {k for k, v in scores["eval2"].items() if v is None}
    finite = {k: v for k, v in scores["eval1"].items() if v is not None}
    assert finite == pytest.approx({k: scores["eval2"][k] for k in finite}, rel=METRIC_RTOL)
    assert main(["features", *files, "-o", str(tmp_path / "x.parquet"), "--workers", "2",
                 "--dask", "local:1"]) == 1
    assert "cannot be combined" in capsys.readouterr().err


@pytest.mark.slow
def test_module_state_reaches_spawned_workers(files, monkeypatch):
    """Without fork (macOS, Windows), the module and the transform are pickled to the
    workers: the same features and transformed values come back."""
    import jetace.run.executor as executor

    _, ref = _features(files)
    monkeypatch.setattr(executor, "start_method", lambda: "spawn")
    got = [v for _, v in iter_features(files, SPEC, device="cpu", progress=False, workers=2,
                                       transform=_two_columns)]
    assert_reproduced(np.concatenate(got)[:, None], _two_columns(ref)[:, None], "spawned")


# ---- a worker that dies (issue 18 point 4) ------------------------------------------

_DEADLY = (0, 4, 7)  # the block of three jets in the blocks below
_BLOCKS = [(0, 0, 4), _DEADLY, (0, 7, 11), (0, 11, 15), (2, 0, 5)]


def _die_on_three(jets):
    if len(jets) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return len(jets)


def _die_once_on_three(flag: str, jets):
    if len(jets) == 3 and not os.path.exists(flag):
        open(flag, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return len(jets)


def _slow_len(jets):
    time.sleep(0.3)
    return len(jets)


def test_worker_killed_on_every_try_fails_naming_the_block(files):
    jf = JetFiles(files, extras=False)
    t0 = time.perf_counter()
    with pytest.warns(UserWarning, match=r"in0.root: a worker process died \(killed by "
                                         r"SIGKILL.*jets \[4, 7\); computing them again"), \
            pytest.raises(WorkerDied, match=r"in0.root: a worker process died \(killed by "
                                            r"SIGKILL, as the out-of-memory killer does\) while"
                                            r" computing jets \[4, 7\), also when"):
        list(map_blocks(jf, _BLOCKS, _die_on_three, workers=2))
    assert time.perf_counter() - t0 < 30  # noticed at once, not a hang
    assert not multiprocessing.active_children()


def test_worker_killed_once_is_replaced_and_the_block_retried(files, tmp_path):
    jf = JetFiles(files, extras=False)
    fn = functools.partial(_die_once_on_three, str(tmp_path / "died"))
    with pytest.warns(UserWarning, match="computing them again"):
        got = [n for _, _, n in map_blocks(jf, _BLOCKS, fn, workers=2)]
    assert got == [b - a for _, a, b in _BLOCKS] and (tmp_path / "died").exists()


def test_worker_killed_from_outside_is_noticed(files):
    jf = JetFiles(files, extras=False)
    gen = map_blocks(jf, _BLOCKS, _slow_len, workers=2)
    got = [next(gen)[2]]
    victim = multiprocessing.active_children()[0]
    os.kill(victim.pid, signal.SIGKILL)
    with pytest.warns(UserWarning, match="killed by SIGKILL"):
        got += [n for _, _, n in gen]
    assert got == [b - a for _, a, b in _BLOCKS]
    assert not multiprocessing.active_children()
