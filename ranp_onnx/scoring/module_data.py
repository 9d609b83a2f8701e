"""Scoring data from a PyTorch user: a DataLoader-like iterable, a file source, or random.

:func:`scoring_batches` turns what :func:`~ranp_onnx.torch_api.prune_module.prune_module` is given
into the :class:`~ranp_onnx.scoring.data.Batch` stream the scorer reads:

- an iterable of ``(inputs, labels)`` pairs of torch tensors or numpy arrays (what a
  ``DataLoader`` yields), ``inputs`` one tensor, a sequence of tensors in the model's input
  order, or a mapping by input name; an item may also be ``inputs`` alone (unlabelled: the
  label-free objective), or a :class:`~ranp_onnx.scoring.data.Batch`;
- a path or the string ``"random"``, read with :func:`~ranp_onnx.scoring.data.open_data`;
- None, for criteria that need no data.

Inputs are cast to the model's input type and checked against its shape (the batch axis
is free); class labels become int64, regression targets the output's float type.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import Any

import numpy as np
import onnx

from ..errors import DataError
from ..ir.graph import GraphAnalysis
from .data import LABELS_BY_LOSS, Batch, open_data

#: What ``prune_module`` accepts as scoring data.
ModuleData = Iterable[Any] | str | os.PathLike[str] | None


def scoring_batches(
    data: ModuleData,
    graph: GraphAnalysis,
    *,
    loss: str = "cross-entropy",
    ignore_index: int | None = None,
    batches: int | None = None,
    batch_size: int = 1,
    seed: int = 0,
) -> tuple[Iterable[Batch] | None, int | None]:
    """Return the scoring batches and how many there are (None if unknown).

    Args:
        data: See the module docstring.
        graph: The analysed export.
        loss: The scoring loss; decides what labels become. Defaults to "cross-entropy".
        ignore_index: Label value the loss ignores (file sources check it). Defaults to None.
        batches: Use at most this many batches. Defaults to all (1 for "random").
        batch_size: Samples per batch of a file or random source. Defaults to 1.
        seed: Seed of random inputs. Defaults to 0.

    Raises:
        DataError: A file source does not fit the model (items of an iterable are checked
            as they are read).
    """
    if data is None:
        return None, None
    if batches is not None and batches < 1:
        raise DataError(f"the number of batches must be at least 1, got {batches}")
    if isinstance(data, (str, os.PathLike)):
        source = open_data(
            data,
            graph,
            batch_size=batch_size,
            batches=batches,
            seed=seed,
            loss=loss,
            ignore_index=ignore_index,
        )
        return source, len(source)
    if loss not in LABELS_BY_LOSS:
        raise DataError(f"unknown loss '{loss}': choose one of {', '.join(LABELS_BY_LOSS)}")
    total = len(data) if isinstance(data, Sized) else None
    if total is not None and batches is not None:
        total = min(total, batches)
    return _Converted(data, graph, LABELS_BY_LOSS[loss], batches), total


class _Converted:
    """An iterable of user items, read as batches on the fly."""

    def __init__(
        self, items: Iterable[Any], graph: GraphAnalysis, labels: str, limit: int | None
    ) -> None:
        self.items = items
        self.graph = graph
        self.labels = labels
        self.limit = limit

    def __iter__(self) -> Iterator[Batch]:
        for count, item in enumerate(self.items, start=1):
            yield to_batch(item, self.graph, self.labels, count)
            if self.limit is not None and count >= self.limit:
                return


def to_batch(item: Any, graph: GraphAnalysis, labels_kind: str, number: int = 1) -> Batch:
    """Convert one ``(inputs, labels)`` item (or ``inputs`` alone, or a Batch).

    Args:
        item: The item.
        graph: The analysed model.
        labels_kind: "classes" or "targets".
        number: The item's position, for messages.

    Raises:
        DataError: Wrong number of inputs, a shape that does not fit, or labels that
            are not class indices where classes are expected.
    """
    if isinstance(item, Batch):
        return item
    inputs, labels = item if isinstance(item, (tuple, list)) and len(item) == 2 else (item, None)
    names = graph.input_names
    if isinstance(inputs, Mapping):
        given = dict(inputs)
    elif isinstance(inputs, (tuple, list)):
        given = dict(zip(names, inputs)) if len(inputs) == len(names) else {}
    else:
        given = {names[0]: inputs} if len(names) == 1 else {}
    if set(given) != set(names):
        raise DataError(
            f"batch {number}: expected the model inputs {', '.join(names)} "
            "(one tensor, a sequence in that order, or a mapping by name)"
        )
    arrays = {name: _input_array(given[name], graph, name, number) for name in names}
    if labels is None:
        return Batch(inputs=arrays, labels=None)
    samples = next(iter(arrays.values())).shape[0]
    return Batch(inputs=arrays, labels=_labels(labels, graph, labels_kind, samples, number))


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _input_array(value: Any, graph: GraphAnalysis, name: str, number: int) -> np.ndarray:
    array = _numpy(value)
    expected = graph.shape(name)
    if array.ndim != len(expected) or tuple(array.shape[1:]) != tuple(expected[1:]):
        want = ", ".join(["N", *map(str, expected[1:])])
        raise DataError(
            f"batch {number}: input '{name}' is {list(array.shape)}, the model takes [{want}]"
        )
    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph.tensors[name].elem_type)
    if dtype.kind == "V":  # bfloat16 and friends: the scorer computes in float32
        dtype = np.dtype(np.float32)
    return np.ascontiguousarray(array.astype(dtype, copy=False))


def _labels(value: Any, graph: GraphAnalysis, kind: str, samples: int, number: int) -> np.ndarray:
    labels = _numpy(value)
    if labels.ndim == 0 or labels.shape[0] != samples:
        raise DataError(
            f"batch {number}: {samples} input samples but labels of shape {list(labels.shape)}"
        )
    if kind == "classes":
        if labels.dtype.kind not in "iub":
            raise DataError(
                f"batch {number}: labels must be integer class indices, got {labels.dtype}"
            )
        return np.ascontiguousarray(labels.astype(np.int64, copy=False))
    output = graph.output_names[0]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph.tensors[output].elem_type)
    dtype = dtype if dtype.kind == "f" else np.dtype(np.float32)
    return np.ascontiguousarray(labels.astype(dtype, copy=False))
