"""The oracle catches every corruption of a correct rewrite, naming the first tensor that differs.

Correct rewrites (random scores, tests/oracle.py) of the six zoo models and of 100
generated architectures are corrupted in every way :mod:`mutations` knows that keeps the
shapes valid; each corrupted model must fail :func:`~ranp_onnx.rewrite.oracle.validate`
with a message naming an output of the node that reads the corrupted tensor first. That
exact rewrites never fail is the business of the pruning tests (tests/test_zoo_pruning.py,
tests/test_random_architectures.py, tests/test_third_party.py), which run the same oracle.
"""

from __future__ import annotations

import re
from collections import Counter

import onnx
import pytest
import torch
from builders import export_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import Mutation, mutations
from oracle import random_prune
from pruning_models import SMALL, zoo_model
from test_random_architectures import blocks, random_model
from torch import nn

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.errors import ValidationError
from ranp_onnx.rewrite.oracle import validate

#: How many corruptions of each kind were caught, over the whole module.
CAUGHT: Counter[str] = Counter()
#: Corruptions no comparison of values can see: every activation their node reads is zero.
UNOBSERVABLE: Counter[str] = Counter()


def assert_caught(
    model: onnx.ModelProto, mutation: Mutation, kept: dict, zero: tuple[str, ...] = ()
) -> None:
    """The oracle refuses the corrupted model and names a tensor of the corrupted node.

    ``zero`` are the tensors all zero in the masked original (the correct rewrite's
    ``degenerate``): a corruption whose node reads only those cannot change a value.
    """
    graph = analyse(model)
    if mutation.inputs and mutation.inputs <= set(zero):
        UNOBSERVABLE[mutation.kind] += 1
        return
    with pytest.raises(ValidationError) as raised:
        validate(graph, mutation.model, kept, device="cpu")
    message = str(raised.value)
    named = re.search(r"tensor '([^']+)'", message)
    assert named is not None, (mutation.kind, message)
    # The corrupted stored tensor itself, or the first tensor computed from it.
    assert named.group(1) in {mutation.where, *mutation.outputs}, (mutation.kind, message)
    CAUGHT[mutation.kind] += 1


def corrupt_and_check(model: onnx.ModelProto, sparsity: float, seed: int) -> int:
    run = random_prune(model, sparsity, seed)
    kept = run.channels.kept_indices(run.keep)
    found = mutations(run.pruned)
    for mutation in found:
        assert_caught(model, mutation, kept, run.validation.degenerate)
    return len(found)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_corruption_of_a_zoo_rewrite_is_caught(name: str) -> None:
    assert corrupt_and_check(zoo_model(name), 0.5, seed=1) >= 5


class Sliced(nn.Module):
    """Reads channel slices (``x[:, a:b]``): the exporter writes Slice nodes on axis 1."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(2, 8, 3, padding=1)
        self.left, self.right = nn.Conv3d(3, 4, 1), nn.Conv3d(4, 4, 3, padding=1)
        self.head = nn.Conv3d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(torch.cat([self.left(y[:, 1:4]), self.right(y[:, 4:8])], 1))


def test_a_shifted_channel_slice_is_caught() -> None:
    torch.manual_seed(0)
    model = export_module(Sliced().eval(), torch.randn(2, 2, 4, 4, 4))
    run = random_prune(model, 0.3, seed=2)
    kept = run.channels.kept_indices(run.keep)
    shifted = [m for m in mutations(run.pruned) if m.kind == "shift a channel slice by one"]
    assert shifted
    for mutation in shifted:
        assert_caught(model, mutation, kept)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    channels=st.integers(1, 3),
    size=st.sampled_from([2, 4]),
    layout=st.lists(blocks, min_size=1, max_size=5),
    head=st.sampled_from(["conv", "flatten", "pool"]),
    seed=st.integers(0, 1000),
)
def test_every_corruption_of_a_generated_rewrite_is_caught(
    channels: int, size: int, layout: list, head: str, seed: int
) -> None:
    model = random_model(channels, size, layout, head, seed)
    corrupt_and_check(model, 0.4, seed)


def test_every_kind_of_corruption_was_tried() -> None:
    """Runs last: the tests above caught at least one corruption of every kind."""
    kinds = {
        "swap two kept channels (weights)",
        "swap two kept channels (weights and BatchNorm)",
        "zero one kept channel",
        "shift a concat offset by one",
        "misalign a grouped conv's groups",
        "drop a bias entry",
        "shift a channel slice by one",
    }
    assert kinds <= set(CAUGHT), CAUGHT
    # Dead inputs are the exception, not the rule.
    assert sum(UNOBSERVABLE.values()) <= 0.05 * sum(CAUGHT.values()), (UNOBSERVABLE, CAUGHT)
