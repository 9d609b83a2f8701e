"""The regularizer: per-group L2 coefficients, driven from any training loop.

Two calls per iteration, as Torch-Pruning's ``regularize()`` is used::

    loss.backward()
    regularizer.regularize()   # gradient += lambda_g w for every group's weights
    optimizer.step()
    regularizer.update()       # removed groups back to 0; every update_interval calls:
                               # ranks, coefficients (Eq. 3) and removals
    if regularizer.done: ...   # every due group is gone

The weight decay ``lambda`` of Eq. 1 is the optimizer's own ``weight_decay``. A removed
group's parameters are set to exactly 0 and kept there: :meth:`Regularizer.regularize`
zeroes their gradients and :meth:`Regularizer.update` their values after each step (so
with momentum or Adam they do not drift back). Under DistributedDataParallel every rank
holds the same weights and computes the same coefficients; pass the wrapped
``ddp.module``. With a GradScaler, call :meth:`~Regularizer.regularize` after
``scaler.unscale_(optimizer)``.

This module imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .allocation import Allocation
from .groups import ParameterSlice, WeightGroups
from .schedule import LayerSchedule, ScheduleSettings


@dataclass(frozen=True)
class _Bound:
    """A slice bound to its tensor: how to reduce it to groups and broadcast back."""

    tensor: torch.Tensor
    name: str
    index: torch.Tensor
    reduce_dims: tuple[int, ...]
    view: tuple[int, ...]


def trainable_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's trainable parameters by ``state_dict`` key (ONNX names for TorchGraph)."""
    return {
        name: tensor
        for name, tensor in module.state_dict(keep_vars=True).items()
        if isinstance(tensor, nn.Parameter) and tensor.requires_grad
    }


def _bind(piece: ParameterSlice, tensor: torch.Tensor, size: int) -> _Bound:
    index = np.where(piece.index >= 0, piece.index, size).reshape(-1)
    view = tuple(tensor.shape[d] if d in piece.axes else 1 for d in range(tensor.dim()))
    return _Bound(
        tensor=tensor,
        name=piece.tensor,
        index=torch.as_tensor(index, dtype=torch.long, device=tensor.device),
        reduce_dims=tuple(d for d in range(tensor.dim()) if d not in piece.axes),
        view=view,
    )


class Regularizer:
    """Growing per-group regularization (Zhang et al., ICIP 2019) on a torch module.

    Args:
        groups: The weight groups (:func:`~ranp_onnx.regularization.groups.weight_groups`).
        allocation: How many groups each layer is to lose.
        tensors: The module's parameters by name (:func:`trainable_tensors`).
        settings: A, the ceiling and the gone ratio.
        update_interval: Calls of :meth:`update` between schedule updates. Defaults to 1.

    Attributes:
        groups: The weight groups.
        allocation: The allocation.
        settings: The schedule settings.
        schedules: One :class:`~ranp_onnx.regularization.schedule.LayerSchedule` per layer.
        iteration: Calls of :meth:`update` so far.
        last_norms: The groups' L1 norms at the last schedule update, per layer.
    """

    def __init__(
        self,
        groups: WeightGroups,
        allocation: Allocation,
        tensors: Mapping[str, torch.Tensor],
        settings: ScheduleSettings,
        *,
        update_interval: int = 1,
    ) -> None:
        self.groups = groups
        self.allocation = allocation
        self.settings = settings
        self.update_interval = update_interval
        self.schedules = [
            LayerSchedule(layer.size, due) for layer, due in zip(groups.layers, allocation.due)
        ]
        self.iteration = 0
        self._bound = [
            [_bind(piece, tensors[piece.tensor], layer.size) for piece in layer.slices]
            for layer in groups.layers
        ]
        self._tensors = {b.name: b.tensor for slices in self._bound for b in slices}
        self._coefficients: dict[str, torch.Tensor] = {}
        self._masks: dict[str, torch.Tensor] = {}
        self.last_norms = self.norms()
        self._refresh(masks=True)

    @classmethod
    def for_module(
        cls,
        module: nn.Module,
        example_inputs: torch.Tensor | Sequence[torch.Tensor],
        options: Any = None,
        **settings: Any,
    ) -> Regularizer:
        """Export the module, find its groups and allocation, and bind to its parameters.

        Example::

            regularizer = Regularizer.for_module(net, torch.randn(1, 3, 16, 112, 112),
                                                 speedup=2, allocation="dpr", lr=1e-3)

        Args:
            module: The trained network (its ``state_dict`` keys name the parameters).
            example_inputs: What the module is exported with.
            options: A :class:`~ranp_onnx.regularization.options.RegularizeOptions`;
                ``settings`` override its fields.
            **settings: Any RegularizeOptions field (``speedup`` or ``target_flops``,
                ``allocation``, ``granularity``, ``weight_decay``, ``a``, ``ceiling``...).

        Raises:
            RanpError: A target the model cannot reach or already meets, or an export the
                tool cannot analyse.
        """
        from .pipeline import module_regularizer

        return module_regularizer(module, example_inputs, options, settings)

    def prune(
        self,
        module: nn.Module,
        example_inputs: torch.Tensor | Sequence[torch.Tensor],
        *,
        tolerance: float = 1e-4,
        validate: bool = True,
    ) -> Any:
        """After the loop: remove the removed groups for good and shrink the module in place.

        Groups still due are removed first. Returns a
        :class:`~ranp_onnx.regularization.results.RegularizeResult` (``module``, ``model``,
        costs, the proof and the record).
        """
        from .pipeline import prune_regularized

        return prune_regularized(
            self, module, example_inputs, tolerance=tolerance, validate=validate
        )

    # -- the two calls of the training loop ------------------------------------------------
    @torch.no_grad()
    def regularize(self) -> None:
        """Add ``lambda_g w`` to every regularized parameter's gradient (after backward)."""
        for name, tensor in self._tensors.items():
            if tensor.grad is None:
                continue
            coefficient = self._coefficients.get(name)
            if coefficient is not None:
                tensor.grad.add_(coefficient * tensor)
            mask = self._masks.get(name)
            if mask is not None:
                tensor.grad.mul_(mask)
                tensor.mul_(mask)

    @torch.no_grad()
    def update(self) -> list[tuple[int, np.ndarray]]:
        """Keep removed groups at 0; every ``update_interval`` calls, update the schedule.

        Returns:
            The groups removed by this call, as (layer index, group indices) pairs.
        """
        self._apply_masks()
        self.iteration += 1
        if self.iteration % self.update_interval or self.done:
            return []
        self.last_norms = self.norms()
        removed = []
        for index, (schedule, norms) in enumerate(zip(self.schedules, self.last_norms)):
            gone = schedule.update(norms, self.iteration, self.settings)
            if gone.size:
                removed.append((index, gone))
        self._refresh(masks=bool(removed))
        return removed

    @torch.no_grad()
    def finish(self) -> list[tuple[int, np.ndarray]]:
        """Remove every group still due, lowest averaged rank first (the budget ran out)."""
        self.last_norms = self.norms()
        removed = []
        for index, (schedule, norms) in enumerate(zip(self.schedules, self.last_norms)):
            gone = schedule.force(norms, self.iteration)
            if gone.size:
                removed.append((index, gone))
        self._refresh(masks=True)
        return removed

    @property
    def done(self) -> bool:
        """True once every layer has lost its due groups."""
        return all(schedule.to_remove <= 0 for schedule in self.schedules)

    @property
    def removed_count(self) -> int:
        """Groups removed so far."""
        return sum(int(schedule.removed.sum()) for schedule in self.schedules)

    def coefficient_range(self) -> tuple[float, float]:
        """Smallest and largest coefficient of the groups still present."""
        present = [s.coefficients[~s.removed] for s in self.schedules]
        values = np.concatenate(present) if present else np.zeros(0)
        return (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)

    def progress(self) -> float:
        """A rough fraction of the regularization done (see ``LayerSchedule.progress``)."""
        due = [s.due for s in self.schedules]
        if sum(due) == 0:
            return 1.0
        parts = [s.progress(self.settings.ceiling) * s.due for s in self.schedules]
        return float(sum(parts) / sum(due))

    # -- norms, coefficients, masks ------------------------------------------------------
    @torch.no_grad()
    def norms(self) -> list[np.ndarray]:
        """The L1 norm of every group, per layer."""
        per_layer = []
        for layer, bound in zip(self.groups.layers, self._bound):
            total: torch.Tensor | None = None
            for piece in bound:
                magnitude = piece.tensor.detach().abs()
                if piece.reduce_dims:
                    magnitude = magnitude.sum(dim=piece.reduce_dims)
                sums = torch.zeros(layer.size + 1, dtype=magnitude.dtype, device=magnitude.device)
                sums.index_add_(0, piece.index, magnitude.reshape(-1))
                total = sums if total is None else total + sums
            per_layer.append(total)
        stacked = torch.cat([t[:-1].double() for t in per_layer if t is not None]).cpu().numpy()
        return list(np.split(stacked, np.cumsum([layer.size for layer in self.groups.layers])[:-1]))

    def _refresh(self, *, masks: bool) -> None:
        coefficients: dict[str, torch.Tensor] = {}
        keep: dict[str, torch.Tensor] = {}
        for schedule, bound in zip(self.schedules, self._bound):
            lam = np.append(schedule.coefficients, 0.0)
            gone = np.append(schedule.removed, False)
            for piece in bound:
                device, dtype = piece.tensor.device, piece.tensor.dtype
                if lam.any():
                    values = torch.as_tensor(lam, dtype=dtype, device=device)[piece.index]
                    term = values.view(piece.view)
                    current = coefficients.get(piece.name)
                    coefficients[piece.name] = term if current is None else current + term
                if masks and gone.any():
                    flags = torch.as_tensor(~gone, device=device)[piece.index].view(piece.view)
                    current = keep.get(piece.name)
                    keep[piece.name] = flags if current is None else current & flags
        self._coefficients = coefficients
        if masks:
            self._masks = {
                name: flags.to(self._tensors[name].dtype) for name, flags in keep.items()
            }
            self._apply_masks()

    @torch.no_grad()
    def _apply_masks(self) -> None:
        for name, mask in self._masks.items():
            self._tensors[name].mul_(mask)

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The schedule state, as tensors and ints (``torch.load(weights_only=True)`` reads it)."""
        layers = []
        for schedule in self.schedules:
            state = schedule.state()
            layers.append(
                {
                    key: torch.as_tensor(value) if isinstance(value, np.ndarray) else value
                    for key, value in state.items()
                }
            )
        return {"iteration": self.iteration, "layers": layers}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`.

        Raises:
            ValueError: The state is for other groups.
        """
        layers = state["layers"]
        if len(layers) != len(self.schedules):
            raise ValueError("the saved regularizer has another number of layers")
        for schedule, saved in zip(self.schedules, layers):
            schedule.load(
                {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in saved.items()}
            )
        self.iteration = int(state["iteration"])
        self.last_norms = self.norms()
        self._refresh(masks=True)
