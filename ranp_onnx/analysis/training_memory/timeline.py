"""The ledger behind the training-memory model: every tensor a step allocates, in order.

:class:`Ledger` counts storages the way torch's allocator sees them: a storage is freed
when its last holder lets go (the forward's value table, autograd's saved tensors, a
gradient waiting in the backward's input buffer, a view of it). Each storage falls in one
category at any moment, so the peak comes with a breakdown that adds up to it:

- ``parameters``: the module's parameters and buffers;
- ``gradients``: the parameters' ``.grad``;
- ``optimizer state``: momentum buffers, Adam's two moments and step counters;
- ``inputs``: the batch and its labels;
- ``saved activations``: what autograd keeps for the backward pass (a storage saved by
  two ops, say a Relu's output and the next Conv's input, is counted once);
- ``working set``: the rest: forward values not (or no longer) saved, gradients in
  flight, scratch buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PARAMETERS = "parameters"
GRADIENTS = "gradients"
STATE = "optimizer state"
INPUTS = "inputs"
SAVED = "saved activations"
WORKING = "working set"
#: The categories of the breakdown, in the order reports list them.
CATEGORIES = (PARAMETERS, GRADIENTS, STATE, INPUTS, SAVED, WORKING)


@dataclass(frozen=True)
class Handle:
    """A tensor: the storage it lives in and its own bytes (a view is smaller than its storage).

    Attributes:
        storage: The storage's id in the ledger.
        nbytes: The tensor's bytes.
    """

    storage: int
    nbytes: int


@dataclass
class _Storage:
    nbytes: int
    kind: str
    holders: int = 1
    saved: int = 0


@dataclass
class Ledger:
    """Live storages, their categories, and the peak with its breakdown.

    Attributes:
        current: Bytes alive now.
        peak: The most bytes alive at any moment so far.
        at_peak: The breakdown at that moment, by category.
        where: What was running at that moment (phase and node).
    """

    current: int = 0
    peak: int = 0
    at_peak: dict[str, int] = field(default_factory=dict)
    where: tuple[str, str | None] = ("forward", None)
    _storages: dict[int, _Storage] = field(default_factory=dict)
    _totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    _next: int = 0
    _phase: tuple[str, str | None] = ("forward", None)

    def at(self, phase: str, node: str | None = None) -> None:
        """Say what runs now (reported with the peak)."""
        self._phase = (phase, node)

    def new(self, nbytes: int, kind: str = WORKING) -> Handle:
        """Allocate a storage of ``nbytes`` with one holder."""
        self._next += 1
        self._storages[self._next] = _Storage(int(nbytes), kind)
        self._move(self._next, None)
        self.current += int(nbytes)
        self._check(0)
        return Handle(self._next, int(nbytes))

    def hold(self, handle: Handle, *, saved: bool = False) -> Handle:
        """Add a holder (autograd's saved tensors with ``saved``); returns the handle."""
        storage = self._storages[handle.storage]
        before = self._category(storage)
        storage.holders += 1
        storage.saved += int(saved)
        self._move(handle.storage, before)
        return handle

    def drop(self, handle: Handle, *, saved: bool = False) -> None:
        """Remove a holder; the storage is freed when the last one goes."""
        storage = self._storages[handle.storage]
        before = self._category(storage)
        storage.holders -= 1
        storage.saved -= int(saved)
        if storage.holders > 0:
            self._move(handle.storage, before)
            return
        self._totals[before] -= storage.nbytes
        self.current -= storage.nbytes
        del self._storages[handle.storage]

    def exclusive(self, handle: Handle) -> bool:
        """True if one holder owns the whole storage (torch may then add to it in place)."""
        storage = self._storages[handle.storage]
        return storage.holders == 1 and storage.nbytes == handle.nbytes

    def recategorize(self, handle: Handle, kind: str) -> None:
        """Change what a storage is (a gradient stolen into a parameter's ``.grad``)."""
        storage = self._storages[handle.storage]
        before = self._category(storage)
        storage.kind = kind
        self._move(handle.storage, before)

    def spike(self, nbytes: int) -> None:
        """Scratch of ``nbytes`` allocated and freed at once: counted only for the peak."""
        self._check(max(int(nbytes), 0))

    def total(self, kind: str) -> int:
        """Bytes alive now in one category."""
        return self._totals[kind]

    def _category(self, storage: _Storage) -> str:
        return SAVED if storage.saved > 0 and storage.kind == WORKING else storage.kind

    def _move(self, storage_id: int, before: str | None) -> None:
        storage = self._storages[storage_id]
        after = self._category(storage)
        if before == after:
            return
        if before is not None:
            self._totals[before] -= storage.nbytes
        self._totals[after] += storage.nbytes

    def _check(self, scratch: int) -> None:
        if self.current + scratch > self.peak:
            self.peak = self.current + scratch
            self.at_peak = dict(self._totals)
            self.at_peak[WORKING] += scratch
            self.where = self._phase
