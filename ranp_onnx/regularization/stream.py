"""Training batches: endless epochs over the data, reshuffled per epoch, resumable.

A file source (:class:`~ranp_onnx.scoring.data.DataSource`) is read in its stored order, so its
samples are shuffled here: each epoch reads the batches in pools, mixes the samples of a
pool with a generator seeded by ``(seed, epoch, pool)``, and cuts them into batches of the
source's size (an incomplete batch at the end of an epoch is dropped: BatchNorm cannot
train on one sample). Any other iterable (a DataLoader) is used as it comes: it shuffles
itself. Position ``(epoch, batch)`` replays exactly, so a resumed run sees the batches the
interrupted one would have seen.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sized
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..scoring.data import Batch, DataSource

#: Batches whose samples are mixed together when a file source is shuffled.
POOL = 16


@dataclass(frozen=True)
class Position:
    """Where a stream is: the epoch, and the batches of it already taken."""

    epoch: int = 0
    batch: int = 0


class TrainingStream:
    """Endless labelled batches from a data source.

    Args:
        data: Batches (a DataSource, or converted user items).
        seed: Seeds the shuffling of file sources.
        batch_size: The batch size of a file source (where it shuffles).
    """

    def __init__(self, data: Iterable[Batch], *, seed: int, batch_size: int) -> None:
        self.data = data
        self.seed = seed
        self.batch_size = batch_size
        self.shuffle = isinstance(data, DataSource)

    @property
    def per_epoch(self) -> int | None:
        """Batches per epoch, where known."""
        if isinstance(self.data, DataSource):
            return self.data.samples // self.batch_size
        return len(self.data) if isinstance(self.data, Sized) else None

    def batches(self, start: Position) -> Iterator[tuple[Position, Batch]]:
        """Yield (position after the batch, batch) forever, from ``start``.

        Raises:
            DataError: An epoch yields no batch, or a batch has no labels.
        """
        epoch, skip = start.epoch, start.batch
        while True:
            count = 0
            for count, batch in enumerate(self._epoch(epoch), start=1):
                if count <= skip:
                    continue
                if batch.labels is None:
                    raise DataError(
                        "regularize trains the model: the data needs labels (batch "
                        f"{count} of epoch {epoch + 1} has none; `data` random has none)"
                    )
                yield Position(epoch, count), batch
            if count == 0:
                raise DataError(_empty_epoch(self.data, self.batch_size, epoch))
            epoch, skip = epoch + 1, 0

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        if not self.shuffle:
            yield from self.data
            return
        pool: list[Batch] = []
        carry: Batch | None = None
        number = 0
        for batch in self.data:
            pool.append(batch)
            if len(pool) == POOL:
                carry = yield from self._mixed(pool, carry, (self.seed, epoch, number))
                pool, number = [], number + 1
        if pool:
            yield from self._mixed(pool, carry, (self.seed, epoch, number))

    def _mixed(
        self, pool: list[Batch], carry: Batch | None, key: tuple[int, int, int]
    ) -> Generator[Batch, None, Batch | None]:
        """Shuffle a pool's samples (and those left over), yield full batches; return the rest."""
        parts = ([carry] if carry is not None else []) + pool
        joined = _join(parts)
        samples = _samples(joined)
        order = np.random.default_rng(key).permutation(samples)
        full = samples // self.batch_size * self.batch_size
        for first in range(0, full, self.batch_size):
            yield _take(joined, order[first : first + self.batch_size])
        return _take(joined, order[full:]) if full < samples else None


def _samples(batch: Batch) -> int:
    return int(next(iter(batch.inputs.values())).shape[0])


def _join(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    inputs = {name: np.concatenate([b.inputs[name] for b in batches]) for name in batches[0].inputs}
    labels = [b.labels for b in batches if b.labels is not None]
    joined = np.concatenate(labels) if len(labels) == len(batches) else None
    return Batch(inputs=inputs, labels=joined)


def _take(batch: Batch, rows: np.ndarray) -> Batch:
    rows = np.sort(rows)
    labels = batch.labels[rows] if batch.labels is not None else None
    return Batch({name: array[rows] for name, array in batch.inputs.items()}, labels)


def _empty_epoch(data: Iterable[Batch], batch_size: int, epoch: int) -> str:
    if isinstance(data, DataSource):
        return (
            f"the data has {data.samples} samples, fewer than one batch of {batch_size}: "
            "lower `batch_size`"
        )
    if epoch > 0:
        return (
            "the data yielded no batch in its second pass: give a re-iterable (a DataLoader "
            "or a list), not a generator"
        )
    return "the data yielded no batch"
