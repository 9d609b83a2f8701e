"""The union-find the op rules write into while coupling channels.

A :class:`Space` is one channel axis of one tensor (or a virtual axis such as a
GroupNormalization's groups), a range of union-find elements. Rules tie elements of spaces
together, declare layers, require equal counts per block and block tensors; see
:mod:`ranp_onnx.analysis.channels` for what the result means.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import InternalError
from ..ir.graph import GraphAnalysis, NodeInfo


@dataclass(frozen=True)
class Space:
    """One channel axis of one tensor, as a range of union-find elements.

    Attributes:
        tensor: The tensor (or a virtual name such as ``node#groups``).
        axis: The axis of the tensor.
        size: Its length.
        start: Global id of its first element.
    """

    tensor: str
    axis: int
    size: int
    start: int

    @property
    def ids(self) -> np.ndarray:
        """Global element ids."""
        return np.arange(self.start, self.start + self.size)


class ChannelGraph:
    """The union-find the op rules write into while coupling channels.

    What the rules declared is kept in public attributes for :mod:`ranp_onnx.analysis.channels`:
    ``blocked`` (tensor -> reason), ``layers`` (node, output space, weight), ``equal``
    (space, groups, node), ``derived``, ``recomputed``, ``regenerated`` and ``stored``
    (see :mod:`ranp_onnx.analysis.channel_statics`), ``members`` (tensor -> nodes), ``notes``
    (element ids, text) and ``declared`` ((tensor, axis) -> the nodes whose rule asked for
    that space, recorded while :attr:`coupling` names the node being coupled).

    Rules call :meth:`space`, :meth:`tie`, :meth:`tie_blocks`, :meth:`block`,
    :meth:`add_layer`, :meth:`equal_groups` and :meth:`note`; :func:`analyse_channels`
    turns the result into a :class:`ChannelAnalysis`.
    """

    def __init__(self, graph: GraphAnalysis) -> None:
        self.graph = graph
        self._spaces: dict[tuple[str, int], Space] = {}
        self._parent: list[int] = []
        self.blocked: dict[str, str] = {}
        self.layers: list[tuple[NodeInfo, Space, str]] = []
        self.equal: list[tuple[Space, int, str]] = []
        self.derived: list[tuple[str, int, tuple[str, int], int]] = []
        self.recomputed: set[str] = set()
        self.regenerated: list[tuple[str, int]] = []
        self.stored: set[str] = set()
        self.members: dict[str, set[str]] = defaultdict(set)
        self.declared: dict[tuple[str, int], set[str]] = defaultdict(set)
        self.coupling: NodeInfo | None = None
        self.notes: list[tuple[np.ndarray, str]] = []

    # -- spaces ------------------------------------------------------------------------
    def space(self, tensor: str, axis: int = 1, *, size: int | None = None) -> Space:
        """Return the space of ``tensor``'s ``axis``, creating it on first use.

        Args:
            tensor: A tensor name, or a virtual name (then ``size`` is required).
            axis: The axis (negative counts from the end).
            size: The length, for virtual spaces.
        """
        if size is None:
            shape = self.graph.shape(tensor)
            axis = axis % len(shape) if shape else 0
            size = shape[axis] if shape else 1
        key = (tensor, axis)
        if self.coupling is not None:
            self.declared[key].add(self.coupling.name)
        found = self._spaces.get(key)
        if found is not None:
            if found.size != size:
                raise InternalError(f"space {key} declared with sizes {found.size} and {size}")
            return found
        created = Space(tensor=tensor, axis=axis, size=size, start=len(self._parent))
        self._parent.extend(range(created.start, created.start + size))
        self._spaces[key] = created
        return created

    def has_space(self, tensor: str, axis: int) -> bool:
        """Return True if the space of ``tensor``'s ``axis`` exists."""
        rank = len(self.graph.shape(tensor)) if tensor in self.graph.tensors else 1
        return (tensor, axis % max(rank, 1)) in self._spaces

    def member(self, node: NodeInfo, *spaces: Space) -> None:
        """Record that ``node`` reads or writes these spaces (for plans and reports)."""
        for space in spaces:
            self.members[space.tensor].add(node.name)

    # -- ties --------------------------------------------------------------------------
    def tie(
        self,
        a: Space,
        b: Space,
        *,
        a_start: int = 0,
        b_start: int = 0,
        count: int | None = None,
    ) -> None:
        """Tie ``a[a_start + i]`` to ``b[b_start + i]`` for i < count.

        ``count`` defaults to the rest of ``a``.
        """
        if count is None:
            count = a.size - a_start
        if a_start + count > a.size or b_start + count > b.size:
            raise InternalError(f"tie beyond {a.tensor}:{a.axis} or {b.tensor}:{b.axis}")
        for i in range(count):
            self._union(a.start + a_start + i, b.start + b_start + i)

    def tie_blocks(self, fine: Space, coarse: Space, block: int) -> None:
        """Tie ``fine[i]`` to ``coarse[i // block]`` (flattened features, channel multipliers)."""
        if fine.size != coarse.size * block:
            raise InternalError(f"tie_blocks {fine.size} != {coarse.size} x {block}")
        for i in range(fine.size):
            self._union(fine.start + i, coarse.start + i // block)

    def block(self, tensor: str, reason: str) -> None:
        """Fix every space of ``tensor``: its channels are never removed, for ``reason``."""
        self.blocked.setdefault(tensor, reason)

    def block_node(self, node: NodeInfo, reason: str) -> None:
        """Fix the channels of every activation the node reads or writes."""
        for name in (*node.inputs, *node.outputs):
            if name and name in self.graph.tensors and not self.graph.tensors[name].static:
                self.block(name, f"{reason} (node '{node.name}')")

    def add_layer(self, node: NodeInfo, output: Space, weight: str) -> None:
        """Declare the elements of ``output`` to be the neurons of layer ``node``."""
        self.layers.append((node, output, weight))
        self.member(node, output)

    def note(self, space: Space, text: str, *, start: int = 0, count: int | None = None) -> None:
        """Say how a rule grouped ``space[start:start + count]`` (``explain`` shows it).

        For couplings a reader would not guess from the layers alone: channels pruned in
        whole GroupNorm groups, padded channels that no layer upstream computes. ``count``
        defaults to the rest of the space.
        """
        stop = space.size if count is None else start + count
        self.notes.append((space.ids[start:stop], text))

    def equal_groups(self, space: Space, groups: int, node: NodeInfo) -> None:
        """Require the ``groups`` contiguous blocks of ``space`` to keep equally many units."""
        self.equal.append((space, groups, node.name))

    def derive(self, tensor: str, axis: int, source: Space, divisor: int) -> None:
        """Declare that ``tensor``'s ``axis`` shrinks to ``source``'s kept count / divisor."""
        self.derived.append((tensor, axis, (source.tensor, source.axis), divisor))

    # -- union-find --------------------------------------------------------------------
    def _find(self, item: int) -> int:
        parent = self._parent
        root = item
        while parent[root] != root:
            root = parent[root]
        while parent[item] != root:
            parent[item], item = root, parent[item]
        return root

    def _union(self, a: int, b: int) -> None:
        root_a, root_b = self._find(a), self._find(b)
        if root_a != root_b:
            self._parent[max(root_a, root_b)] = min(root_a, root_b)

    def roots(self) -> np.ndarray:
        """Return the root element of every element."""
        return np.array([self._find(i) for i in range(len(self._parent))], dtype=np.int64)

    def spaces(self) -> Iterable[Space]:
        """All spaces, in creation order."""
        return self._spaces.values()
