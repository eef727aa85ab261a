"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny matrices: the thread pool only adds
    synchronisation cost, and on a busy machine (CI, other jobs) spinning threads make
    such fits 10-100x slower. Use with ``pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: test modules of the slow tier (``-m "not slow"`` leaves them out): command-line runs
#: end to end, worker process pools, dask clusters, notebooks, Pythia generation, and
#: the tagger fits on toy mixtures; individual slow tests elsewhere carry the marker
SLOW_MODULES = frozenset({"test_cli_train", "test_cli_score", "test_demo", "test_distributed",
                          "test_generate", "test_kill", "test_notebooks", "test_parallel",
                          "test_weak"})
#: and single tests (module -> test function names) that train networks for seconds
SLOW_TESTS = {"test_anomaly": {"test_synthetic_signal_ranked_above_background",
                               "test_reproducible_and_round_trip",
                               "test_toy_three_prong_jets_are_anomalous",
                               "test_autoencoder_seed_matters_and_early_stopping"},
              "test_fused": {"test_model_scores_through_the_fused_path"}}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        name = getattr(item, "originalname", item.name)
        if module in SLOW_MODULES or name in SLOW_TESTS.get(module, ()):
            item.add_marker(pytest.mark.slow)
