"""Scoring data: labelled mini-batches read from ``.npz`` / ``.npy`` files, or random inputs.

RANP scores neurons with the loss gradient on mini-batches of training data (one pass over
the data, batch size 1 in the reference). :func:`open_data` checks a data source against the
analysed model and returns a :class:`DataSource` that yields :class:`Batch` objects.

Layouts (``SOURCE`` is what ``--data`` names):

- **One .npz file** (``np.savez(path, inputs=x, labels=y)``): an array ``inputs`` for a
  single-input model (or an array named after that input), one array per graph input name
  for a multi-input model, and ``labels``. No other arrays.
- **A folder**, read in file-name order, not recursively; other files are ignored:

  - ``*.npz`` files, each holding one or more samples in the layout above;
  - and/or pairs ``NAME.npy`` (the inputs, single-input models only) and
    ``NAME.labels.npy`` (their labels), each pair holding one or more samples.

  Batches may span files.
- **random**: the literal string (pass a ``Path``, or ``./random``, for a folder of that
  name). Standard-normal
  inputs at the analysed shapes (integer inputs get zeros), N = ``batch_size``, seeded,
  one batch unless ``batches`` says more; no labels, so the scorer uses the label-free
  objective of :mod:`ranp_onnx.scoring.losses`: for a quick look only.

Every array holds N samples on its first axis; the other axes must equal the analysed shape:
inputs ``graph.shape(input)[1:]``. Labels follow the model's first output ``[N, C, *spatial]``:
for ``cross-entropy`` and ``dice-ce``, integer class indices in ``[0, C)`` (or the ignore
index) of shape ``[N, *spatial]`` (per voxel) or ``[N]`` (per sample, when the output is
``[N, C]``); for ``mse``, float targets shaped like the output. Float inputs may be float16,
float32 or float64 and are cast to the model's dtype.

Arrays are read as a stream: at most one batch (plus the current file, for the rare
Fortran-ordered array) is in memory. The module parses ``.npy`` headers itself and never
unpickles (as ``np.load(allow_pickle=False)``): an object array is refused. Names, shapes and
dtypes are checked when the source is opened; values (NaN, Inf, labels out of range) as each
batch is read. Every problem is a :class:`~ranp_onnx.errors.DataError` naming the file, the
array and the expected shape. This module says what the arrays must be for a model;
:mod:`ranp_onnx.scoring.sample_files` finds, checks and streams the files.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..errors import DataError
from ..ir.graph import GraphAnalysis
from .sample_files import FLOAT_SIZES, LABELS, ArraySpec, Layout, Shard, find_shards, open_readers

#: What the labels of each loss are: integer ``classes`` or float ``targets``.
LABELS_BY_LOSS: Mapping[str, str] = {
    "cross-entropy": "classes",
    "dice-ce": "classes",
    "mse": "targets",
}

#: The ``source`` that asks for Gaussian inputs without labels.
RANDOM = "random"


@dataclass(frozen=True)
class Batch:
    """One mini-batch.

    Attributes:
        inputs: One array per graph input name, in the model input's dtype, N on axis 0.
        labels: Class indices (int64) or float targets, N on axis 0; None for random data.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None


@dataclass(frozen=True)
class DataSource:
    """An iterable of :class:`Batch`; each iteration starts again from the beginning.

    Attributes:
        samples: Samples one iteration reads (``batches x batch_size`` for random data).
        labelled: True if batches carry labels (False for random data).
    """

    samples: int
    labelled: bool
    _count: int = field(repr=False)
    _description: str = field(repr=False)
    _batches: Callable[[], Iterator[Batch]] = field(repr=False)

    def __iter__(self) -> Iterator[Batch]:
        """Yield the batches, in the same order every time."""
        return self._batches()

    def __len__(self) -> int:
        """Return the number of batches an iteration yields."""
        return self._count

    def describe(self) -> str:
        """One line for logs, e.g. "train.npz: 120 samples, 12 batches of 10"."""
        return self._description


def open_data(
    source: str | os.PathLike[str],
    graph: GraphAnalysis,
    *,
    batch_size: int = 1,
    batches: int | None = None,
    seed: int = 0,
    loss: str = "cross-entropy",
    ignore_index: int | None = None,
) -> DataSource:
    """Open scoring data and check its layout against the model.

    Args:
        source: An ``.npz`` file, a folder of ``.npz`` / ``.npy`` files, or the string
            ``"random"``.
        graph: The analysed model (input shapes and dtypes, the first output's shape).
        batch_size: Samples per batch; the last batch may be smaller. Defaults to 1.
        batches: At most this many batches. Defaults to one pass over the data (1 for random).
        seed: Seed of the random inputs; files are always read in order. Defaults to 0.
        loss: "cross-entropy", "dice-ce" or "mse": decides what labels must be.
            Defaults to "cross-entropy".
        ignore_index: A label value that marks elements the loss ignores. Defaults to None.

    Returns:
        The data source.

    Raises:
        DataError: The source is missing or empty, or an array has the wrong name, shape or
            dtype (values are checked as batches are read, with the same error).
    """
    if batch_size < 1:
        raise DataError(f"the batch size must be at least 1, got {batch_size}")
    if batches is not None and batches < 1:
        raise DataError(f"the number of batches must be at least 1, got {batches}")
    if isinstance(source, str) and source == RANDOM:
        return _random_source(graph, batch_size, batches or 1, seed)
    layout = layout_for(graph, loss, ignore_index)
    path = Path(source)
    shards = find_shards(path, layout)
    samples = sum(shard.samples for shard in shards)
    full = math.ceil(samples / batch_size)
    count = full if batches is None else min(batches, full)
    name = f"{path.name}/: {len(shards)} sample files, " if path.is_dir() else f"{path.name}: "
    text = f"{name}{samples} samples, {_batches_text(count, batch_size)}"
    last = samples - (full - 1) * batch_size
    if count < full:
        text = f"{name}{samples} samples, first {count} of {full} batches of {batch_size}"
    elif last != batch_size:
        text += f" (the last of {last})"
    return DataSource(
        min(samples, count * batch_size),
        True,
        count,
        text,
        lambda: _file_batches(shards, layout, batch_size, count),
    )


def _batches_text(count: int, batch_size: int) -> str:
    return f"{count} batch{'es' if count != 1 else ''} of {batch_size}"


def _file_batches(
    shards: Sequence[Shard], layout: Layout, batch_size: int, count: int
) -> Iterator[Batch]:
    """Read the shards in order, ``batch_size`` samples at a time; batches span files."""
    pending: list[dict[str, np.ndarray]] = []
    have = produced = 0
    for shard in shards:
        with contextlib.ExitStack() as stack:
            readers = open_readers(shard, layout, stack)
            left = shard.samples
            while left:
                take = min(left, batch_size - have)
                pending.append({key: reader.read(take) for key, reader in readers.items()})
                have, left = have + take, left - take
                if have == batch_size:
                    yield _join(pending)
                    produced += 1
                    if produced == count:
                        return
                    pending, have = [], 0
    if pending:
        yield _join(pending)


def _random_source(graph: GraphAnalysis, batch_size: int, count: int, seed: int) -> DataSource:
    """Standard-normal inputs (integer and bool inputs get zeros), no labels."""
    shapes = {name: (batch_size, *graph.shape(name)[1:]) for name in graph.input_names}
    dtypes = {name: _input_dtype(graph, name) for name in graph.input_names}

    def batches() -> Iterator[Batch]:
        generator = np.random.default_rng(seed)
        for _ in range(count):
            inputs = {}
            for name, shape in shapes.items():
                dtype = dtypes[name]
                if dtype.kind == "f":
                    draw = np.float64 if dtype == np.float64 else np.float32
                    inputs[name] = generator.standard_normal(shape, dtype=draw).astype(dtype)
                else:
                    inputs[name] = np.zeros(shape, dtype=dtype)
            yield Batch(inputs=inputs, labels=None)

    text = (
        f"random: Gaussian inputs, {_batches_text(count, batch_size)} (seed {seed}), "
        "no labels: label-free objective, for a quick look only"
    )
    return DataSource(count * batch_size, False, count, text, batches)


def _input_dtype(graph: GraphAnalysis, name: str) -> np.dtype:
    """The numpy dtype of a graph input (float32 for float types numpy lacks, e.g. bfloat16)."""
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(graph.tensors[name].elem_type))
    if dtype.kind == "V" or (dtype.kind == "f" and dtype.itemsize not in FLOAT_SIZES):
        return np.dtype(np.float32)
    return dtype


def layout_for(graph: GraphAnalysis, loss: str, ignore_index: int | None) -> Layout:
    """Return what every array must be for this model and loss.

    Raises:
        DataError: An unknown loss, or a classification loss on an output without at
            least 2 classes on axis 1.
    """
    if loss not in LABELS_BY_LOSS:
        raise DataError(f"unknown loss '{loss}': choose one of {', '.join(LABELS_BY_LOSS)}")
    inputs = []
    for name in graph.input_names:
        shape = graph.shape(name)
        dtype = _input_dtype(graph, name)
        kind = {"f": "float", "b": "bool"}.get(dtype.kind, "int")
        aliases = ("inputs", name) if len(graph.input_names) == 1 else (name,)
        context = f"to match the input '{name}' {_dims_text(shape)}"
        inputs.append(ArraySpec(name, aliases, shape[1:], kind, dtype, context))
    output = graph.output_names[0]
    shape = graph.shape(output)
    context = f"to match the output '{output}' {_dims_text(shape)}"
    if LABELS_BY_LOSS[loss] == "targets":
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(graph.tensors[output].elem_type))
        dtype = dtype if dtype.kind == "f" and dtype.itemsize in FLOAT_SIZES else np.dtype("f4")
        labels = ArraySpec("", (LABELS,), shape[1:], "targets", dtype, context)
        return Layout(tuple(inputs), labels, None, None)
    if len(shape) < 2 or shape[1] < 2:
        raise DataError(
            f"{loss} needs an output of shape [N, C, ...] with C >= 2 classes; the output "
            f"'{output}' is {_dims_text(shape)} (use `loss` mse for a regression output)"
        )
    labels_shape = (shape[0], *shape[2:])
    labels = ArraySpec("", (LABELS,), labels_shape[1:], "classes", np.dtype(np.int64), context)
    return Layout(tuple(inputs), labels, shape[1], ignore_index)


def _dims_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(["N", *map(str, shape[1:])]) + "]"


def _join(chunks: Sequence[Mapping[str, np.ndarray]]) -> Batch:
    """Concatenate the chunks read from one or more files into a batch."""
    joined = {
        key: chunks[0][key] if len(chunks) == 1 else np.concatenate([c[key] for c in chunks])
        for key in chunks[0]
    }
    labels = joined.pop("")
    return Batch(inputs=joined, labels=labels)
