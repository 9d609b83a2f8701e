"""Shrink a user's torch module in place to the shapes of its pruned ONNX export.

The torchscript exporter names every initializer after its torch parameter or buffer, so
the pruned model's initializers say, by ``state_dict`` key, what each tensor becomes: its
kept channels, or (with re-initialisation) fresh values. :func:`shrink_in_place` copies
them into the module (new ``nn.Parameter`` objects where a shape changes) and updates the
layer attributes that record channel counts (Conv / ConvTranspose ``in_channels``,
``out_channels`` and ``groups``; BatchNorm / InstanceNorm ``num_features``; GroupNorm
``num_channels`` and ``num_groups``; Linear ``in_features`` / ``out_features``; PReLU
``num_parameters``).

Every change goes into a :class:`ShrinkJournal` first, so a module whose forward cannot
follow (a hard-coded channel count) is put back exactly as it was, the very same
Parameter objects included. Whether the shrunk module is right is decided by running it,
in :mod:`~ranp_onnx.torch_api.prune_module`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import onnx
import torch
from onnx import numpy_helper
from torch import nn

from ..errors import RanpError
from ..ops import rule_for

_CONV = nn.modules.conv._ConvNd
_NORM = nn.modules.batchnorm._NormBase  # BatchNorm*, SyncBatchNorm, InstanceNorm*
#: Layers whose channel count only their input tells (no parameter carries it).
_PARAMETERLESS = (_NORM, nn.GroupNorm)


class ShrinkError(RanpError):
    """The module cannot take the pruned shapes (the message says which tensor)."""


@dataclass
class ShrinkJournal:
    """Everything :func:`shrink_in_place` changed, to undo it.

    Attributes:
        changed: ``state_dict`` keys whose tensor was replaced or overwritten.
    """

    changed: list[str] = field(default_factory=list)
    _undo: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def set_attribute(self, owner: object, name: str, value: Any) -> None:
        """Set ``owner.name`` (an attribute, or a parameter / buffer slot), noting the old."""
        slots = _slots_of(owner, name)
        if slots is not None:
            old = slots[name]
            self._undo.append(lambda: slots.__setitem__(name, old))
            slots[name] = value
            return
        previous = getattr(owner, name)
        if previous == value:
            return
        self._undo.append(lambda: setattr(owner, name, previous))
        setattr(owner, name, value)

    def overwrite(self, tensor: torch.Tensor, value: torch.Tensor) -> None:
        """Copy ``value`` into ``tensor`` (same shape), keeping a copy of the old values."""
        old = tensor.detach().clone()
        self._undo.append(lambda: _copy(tensor, old))
        _copy(tensor, value)

    def restore(self) -> None:
        """Undo every change, newest first."""
        while self._undo:
            self._undo.pop()()
        self.changed.clear()


def shrink_in_place(module: nn.Module, pruned: onnx.ModelProto) -> ShrinkJournal:
    """Give ``module`` the shapes and values of the pruned export's initializers.

    Args:
        module: The module that was exported (with the torchscript exporter, parameter
            names kept).
        pruned: Its pruned export.

    Returns:
        The journal of changes (call ``restore()`` to undo them).

    Raises:
        ShrinkError: An initializer cannot become the module's tensor (rank or dtype
            differs); the module is restored before this is raised.
    """
    journal = ShrinkJournal()
    try:
        _replace_tensors(module, pruned, journal)
        groups = _conv_groups(pruned)
        for name, layer in module.named_modules():
            _update_attributes(name, layer, groups, journal)
    except BaseException:
        journal.restore()
        raise
    return journal


@contextmanager
def recording_input_channels(
    module: nn.Module, journal: ShrinkJournal
) -> Iterator[dict[nn.Module, int]]:
    """Record the input channels of parameterless norm layers while the module runs.

    Their channel count (``num_features`` of a non-affine InstanceNorm, say) shows in no
    initializer; :func:`set_parameterless_channels` applies what a forward pass saw. A
    non-affine GroupNorm gets its channels and groups (into ``journal``) before it runs,
    since its group count decides what it computes.
    """
    seen: dict[nn.Module, int] = {}

    def hook(layer: nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() > 1:
            if isinstance(layer, nn.GroupNorm):
                _set_group_norm_channels(layer, int(args[0].shape[1]), journal)
            else:
                seen[layer] = int(args[0].shape[1])

    handles = [
        layer.register_forward_pre_hook(hook)
        for layer in module.modules()
        if isinstance(layer, _PARAMETERLESS) and not _has_channel_tensors(layer)
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def set_parameterless_channels(seen: Mapping[nn.Module, int], journal: ShrinkJournal) -> None:
    """Set ``num_features`` of each norm layer :func:`recording_input_channels` saw."""
    for layer, channels in seen.items():
        journal.set_attribute(layer, "num_features", channels)


def _set_group_norm_channels(layer: nn.GroupNorm, channels: int, journal: ShrinkJournal) -> None:
    """``num_channels``, and ``num_groups`` as the whole groups kept.

    The graph prunes a GroupNorm's channels in whole groups only (removing one leaves the
    statistics of the others unchanged), so each group keeps its size.

    Raises:
        ShrinkError: ``channels`` is not a whole number of groups.
    """
    per_group = layer.num_channels // layer.num_groups
    if channels % per_group:
        raise ShrinkError(
            f"a GroupNorm of {layer.num_groups} groups of {per_group} channels cannot have "
            f"{channels} channels"
        )
    journal.set_attribute(layer, "num_groups", channels // per_group)
    journal.set_attribute(layer, "num_channels", channels)


def _replace_tensors(module: nn.Module, pruned: onnx.ModelProto, journal: ShrinkJournal) -> None:
    """Put every initializer's value into the parameter or buffer of that name."""
    values = {tensor.name: tensor for tensor in pruned.graph.initializer}
    replaced: dict[int, torch.Tensor] = {}
    for prefix, owner in module.named_modules(remove_duplicate=False):
        for slots in (owner._parameters, owner._buffers):
            for name, tensor in list(slots.items()):
                if tensor is None:
                    continue
                key = f"{prefix}.{name}" if prefix else name
                if id(tensor) in replaced:  # the same tensor under another name (tied)
                    journal.set_attribute(owner, name, replaced[id(tensor)])
                    continue
                if key not in values:
                    continue
                value = _as_tensor(values[key], tensor, key)
                if value.shape == tensor.shape:
                    if not torch.equal(value, tensor.detach()):
                        journal.overwrite(tensor, value)
                        journal.changed.append(key)
                    continue
                new: torch.Tensor = value
                if isinstance(tensor, nn.Parameter):
                    new = nn.Parameter(value, requires_grad=tensor.requires_grad)
                replaced[id(tensor)] = new
                journal.set_attribute(owner, name, new)
                journal.changed.append(key)


def _as_tensor(initializer: onnx.TensorProto, like: torch.Tensor, key: str) -> torch.Tensor:
    array = numpy_helper.to_array(initializer)
    if array.ndim != like.dim():
        raise ShrinkError(
            f"'{key}' is {list(like.shape)} in the module but {list(array.shape)} in the "
            "pruned model"
        )
    try:
        value = torch.from_numpy(array.copy())
    except TypeError as error:
        raise ShrinkError(f"'{key}' has a type torch cannot hold ({array.dtype})") from error
    return value.to(device=like.device, dtype=like.dtype)


def _conv_groups(pruned: onnx.ModelProto) -> dict[str, int]:
    """The ``group`` attribute of every convolution, keyed by its weight's name."""
    groups = {}
    for node in pruned.graph.node:
        rule = rule_for(node.op_type, node.domain)
        if rule is not None and rule.is_convolution and len(node.input) > 1:
            value = next((a.i for a in node.attribute if a.name == "group"), 1)
            groups[node.input[1]] = int(value)
    return groups


#: Updates one kind of layer's channel attributes: (layer, weight shape or None, the pruned
#: convolution's group count or None, journal).
Updater = Callable[[Any, "tuple[int, ...] | None", "int | None", "ShrinkJournal"], None]


def _conv(layer: Any, shape: tuple[int, ...] | None, group: int | None, j: ShrinkJournal) -> None:
    if shape is None:
        return
    group = group if group is not None else layer.groups
    j.set_attribute(layer, "groups", group)
    rows, columns = (
        ("in_channels", "out_channels") if layer.transposed else ("out_channels", "in_channels")
    )
    j.set_attribute(layer, rows, shape[0])
    j.set_attribute(layer, columns, shape[1] * group)


def _norm(layer: Any, shape: tuple[int, ...] | None, group: int | None, j: ShrinkJournal) -> None:
    size = _channel_tensor_size(layer)
    if size is not None:
        j.set_attribute(layer, "num_features", size)


def _group_norm(
    layer: Any, shape: tuple[int, ...] | None, group: int | None, j: ShrinkJournal
) -> None:
    if shape is not None:
        _set_group_norm_channels(layer, shape[0], j)


def _linear(layer: Any, shape: tuple[int, ...] | None, group: int | None, j: ShrinkJournal) -> None:
    if shape is not None:
        j.set_attribute(layer, "out_features", shape[0])
        j.set_attribute(layer, "in_features", shape[1])


def _prelu(layer: Any, shape: tuple[int, ...] | None, group: int | None, j: ShrinkJournal) -> None:
    if shape is not None:
        j.set_attribute(layer, "num_parameters", int(layer.weight.numel()))


#: The torch layers whose channel counts live in attributes, and how to update them (the
#: closest class in a layer's MRO wins, so subclasses are covered).
UPDATERS: dict[type[nn.Module], Updater] = {
    _CONV: _conv,
    _NORM: _norm,
    nn.GroupNorm: _group_norm,
    nn.Linear: _linear,
    nn.PReLU: _prelu,
}


def _update_attributes(
    prefix: str, layer: nn.Module, groups: Mapping[str, int], journal: ShrinkJournal
) -> None:
    """Make a known layer's channel attributes agree with its tensors' new shapes."""
    update = next((UPDATERS[kind] for kind in type(layer).__mro__ if kind in UPDATERS), None)
    if update is None:
        return
    weight = getattr(layer, "weight", None)
    shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
    update(layer, shape, groups.get(f"{prefix}.weight" if prefix else "weight"), journal)


def _channel_tensor_size(layer: nn.Module) -> int | None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        tensor = getattr(layer, name, None)
        if isinstance(tensor, torch.Tensor) and tensor.dim() == 1:
            return int(tensor.shape[0])
    return None


def _has_channel_tensors(layer: nn.Module) -> bool:
    return _channel_tensor_size(layer) is not None


def _slots_of(owner: object, name: str) -> dict[str, Any] | None:
    if isinstance(owner, nn.Module):
        for slots in (owner._parameters, owner._buffers):
            if name in slots:
                return slots
    return None


def _copy(tensor: torch.Tensor, value: torch.Tensor) -> None:
    with torch.no_grad():
        tensor.copy_(value)
