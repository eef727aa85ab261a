"""The execution layer (jetace.run): the one in-order runner, the option objects, and the
feature modules left as pure functions of their inputs (threads belong to the runner)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from tolerances import assert_reproduced
from toyjets import toy_jets, write_jetclass

from jetace.errors import JetaceError
from jetace.features import feature_module
from jetace.io import read_jets, to_packed
from jetace.run.executor import ordered_map, single_threaded_torch
from jetace.run.features import iter_features
from jetace.run.options import ReadOptions, RunOptions, resolve_options

SPEC = {"family": "bip", "order": 3, "degree": 5, "max_particles": 32}


def test_ordered_map_keeps_order_and_window():
    running, peak = [0], [0]
    lock = threading.Lock()

    def work(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01 * (5 - i % 5))  # later items finish first
        with lock:
            running[0] -= 1
        return i * i

    with ThreadPoolExecutor(8) as pool:
        got = list(ordered_map(lambda i: pool.submit(work, i), range(20), window=3))
    assert got == [(i, i * i) for i in range(20)]
    assert peak[0] <= 3


def test_ordered_map_raises_at_the_item_and_cancels_the_rest():
    submitted = []

    def work(i):
        if i == 2:
            raise ValueError("item 2")
        return i

    with ThreadPoolExecutor(1) as pool:
        def submit(i):
            submitted.append(i)
            return pool.submit(work, i)

        seen = []
        with pytest.raises(ValueError, match="item 2"):
            for item, _ in ordered_map(submit, range(100), window=4):
                seen.append(item)
    assert seen == [0, 1] and max(submitted) < 10  # bounded: never ran ahead


def test_options_validate_and_merge():
    read, run = resolve_options(ReadOptions(tree="t"), None, batch_size=7, max_jets=3)
    assert (read.tree, read.max_jets, run.batch_size) == ("t", 3, 7)
    with pytest.raises(TypeError, match="unknown option.*batchsize"):
        resolve_options(batchsize=7)
    for bad in ({"batch_size": 0}, {"workers": 0}, {"workers": 2, "dask": "local:2"},
                {"dtype": torch.int32}):
        with pytest.raises(JetaceError):
            RunOptions(**bad)


def test_forward_never_touches_the_thread_count(monkeypatch, tmp_path):
    """BIPFeatures evaluates large batches in sub-batches without threads of its own."""
    module, max_particles = feature_module(SPEC)
    path = write_jetclass(tmp_path / "big.root", toy_jets(2100, seed=3, max_particles=30))
    flat, counts = to_packed(read_jets(str(path)), max_particles, dtype=torch.float64)
    expected = module.forward_packed(flat, counts)  # 5 sub-batches of 512 jets

    def refuse(n):
        raise AssertionError("a feature module changed torch's thread count")

    monkeypatch.setattr(torch, "set_num_threads", refuse)
    assert_reproduced(module.forward_packed(flat, counts), expected, "pure forward")


def test_single_threaded_blocks_restore_the_count_in_two_threads():
    before = torch.get_num_threads()
    inside = []
    barrier = threading.Barrier(2)

    def job():
        with single_threaded_torch():
            barrier.wait()
            inside.append(torch.get_num_threads())
            time.sleep(0.05)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert inside == [1, 1] and torch.get_num_threads() == before


def test_two_user_threads_run_the_features_at_once(tmp_path):
    """Two runs in two threads give each the one-run features, and leave torch's thread
    count as it was."""
    path = str(write_jetclass(tmp_path / "in.root", toy_jets(300, seed=5, max_particles=30)))
    before = torch.get_num_threads()

    def features():
        return torch.cat([f for _, f in iter_features(path, SPEC, device="cpu",
                                                      batch_size=32, progress=False)])

    ref = features()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: features(), range(2)))
    for got in results:
        assert_reproduced(got, ref, "a run in a user thread")
    assert torch.get_num_threads() == before
