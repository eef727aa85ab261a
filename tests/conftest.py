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
