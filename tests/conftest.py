"""Fixtures shared by the memory tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from ranp_onnx.ops.conv_memory import cpu_capability, cpu_is_verified


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


@pytest.fixture
def verified_cpu() -> None:
    """Skip where the CPU runs other oneDNN kernels than the memory model was checked on.

    On AVX2-only CPUs the convolution scratch differs (``cpu_is_verified``); there the
    tests that compare a prediction with a real step on this CPU cannot hold, and
    ``report --training`` says so in a note (tested apart).
    """
    if not cpu_is_verified():
        pytest.skip(f"the memory model is checked on AVX-512 CPUs; this one is {cpu_capability()}")
