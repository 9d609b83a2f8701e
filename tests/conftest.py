"""Fixtures shared by the memory tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def two_threads() -> Iterator[None]:
    """Two torch threads while a test runs: oneDNN's per-thread scratch follows the count.

    The memory model reads ``torch.get_num_threads()``; its per-thread buffers were
    checked against torch's allocator at 2 threads (the development machine), so the
    memory tests hold the count there on any machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)
