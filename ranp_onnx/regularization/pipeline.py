"""``regularize`` and ``regularize_module``: prune a trained model by regularizing it.

The public entry points of the stage; :class:`~.run.Run` does the work, with the modules
of this package: groups (:mod:`.groups`), allocation (:mod:`.allocation`), the
regularizer (:mod:`.regularizer`), the loop (:mod:`.loop`), the rewrite and its proof
(:mod:`.finish`), checkpoints (:mod:`.checkpoint`) and the record (:mod:`.record`).

This module imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from ..analysis.costs import count_costs
from ..analysis.shapes import analyse, require_convolution
from ..ir.graph import GraphAnalysis
from ..ir.load import LoadedModel
from ..scoring.module_data import ModuleData
from .finish import finish
from .loop import RunProgress
from .options import RegularizeOptions, check_options
from .record import History, build_record
from .regularizer import Regularizer, trainable_tensors
from .results import RegularizeResult
from .run import Run, plan_groups
from .subjects import GraphSubject, ModuleSubject, resolve_device

__all__ = [
    "RegularizeResult",
    "module_regularizer",
    "prune_regularized",
    "regularize",
    "regularize_module",
]


def regularize(
    model: str | onnx.ModelProto | LoadedModel | GraphAnalysis,
    data: ModuleData,
    options: RegularizeOptions,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
) -> RegularizeResult:
    """Prune a trained ONNX model by growing per-group regularization (Zhang et al.).

    Args:
        model: A path, ModelProto, loaded or analysed model (never modified).
        data: Labelled training data: an ``.npz`` file or folder, or an iterable of
            ``(inputs, labels)`` pairs (a DataLoader) or of :class:`~ranp_onnx.scoring.data.Batch`.
        options: What to reach and how (``speedup`` or ``target_flops``, ...).
        input_shapes: Shapes of dynamic inputs.
        progress: Called after every iteration.
        checkpoint: Write checkpoints here (and on Ctrl-C). Defaults to none.
        resume: Continue the run this checkpoint holds.

    Raises:
        RanpError: Bad data or options, a target the model cannot reach or already
            meets; :class:`~ranp_onnx.regularization.loop.Interrupted` on Ctrl-C (after
            the checkpoint is written).
    """
    check_options(options)
    graph = model if isinstance(model, GraphAnalysis) else analyse(model, input_shapes)
    require_convolution(graph)
    subject = GraphSubject(graph, resolve_device(options.device))
    return Run(subject, data, options, progress, checkpoint, resume).execute()


def regularize_module(
    module: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    data: ModuleData,
    *,
    options: RegularizeOptions | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    **settings: Any,
) -> RegularizeResult:
    """Regularize a trained torch module in place, then shrink it in place.

    Example::

        result = regularize_module(net, torch.randn(1, 3, 16, 112, 112), loader,
                                   speedup=2, allocation="dpr", lr=1e-3, finetune=2000)
        net = result.module   # the same object when result.in_place

    Args:
        module: The trained network; trained on its own device.
        example_inputs: One input tensor or a sequence: what it is exported with.
        data: As :func:`regularize` (an iterable of ``(inputs, labels)`` batches).
        options: The options; ``settings`` override its fields.
        progress: Called after every iteration.
        checkpoint: Write checkpoints here (and on Ctrl-C).
        resume: Continue the run this checkpoint holds.
        **settings: Any :class:`~ranp_onnx.regularization.options.RegularizeOptions` field.

    Raises:
        RanpError: As :func:`regularize`.
    """
    options = replace(options or RegularizeOptions(), **settings)
    check_options(options)
    subject = ModuleSubject(module, example_inputs)
    require_convolution(subject.graph)
    return Run(subject, data, options, progress, checkpoint, resume).execute()


def module_regularizer(
    module: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    options: RegularizeOptions | None,
    settings: dict[str, Any],
) -> Regularizer:
    """The regularizer of :meth:`Regularizer.for_module` (no training, no data)."""
    options = replace(options or RegularizeOptions(), **settings)
    check_options(options)
    subject = ModuleSubject(module, example_inputs)
    subject.finish()
    require_convolution(subject.graph)
    tensors = trainable_tensors(module)
    groups, allocation = plan_groups(subject.graph, options, tensors)
    return Regularizer(
        groups, allocation, tensors, options.schedule(), update_interval=options.update_interval
    )


def prune_regularized(
    regularizer: Regularizer,
    module: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    tolerance: float = 1e-4,
    validate: bool = True,
    device: str = "auto",
) -> RegularizeResult:
    """After a user's own loop: remove what the regularizer removed, shrink the module.

    Groups still due are removed first (as they rank). The module is exported with its
    trained weights, rewritten without the removed channels (proven in onnxruntime) and
    shrunk in place (or replaced by ``to_torch`` of the pruned model, with the reason).

    Raises:
        ValidationError: The rewrite does not reproduce the masked model.
    """
    if not regularizer.done:
        regularizer.finish()
    subject = ModuleSubject(module, example_inputs)
    groups = regularizer.groups
    convention = regularizer.allocation.convention
    finished = finish(
        subject.export(),
        dict(subject.graph.input_shapes),
        groups,
        regularizer.schedules,
        convention=convention,
        check=validate,
        tolerance=tolerance,
        device=device,
    )
    subject.adopt(finished.model, tolerance)
    subject.finish()
    before = count_costs(groups.channels.graph, convention)
    record = build_record(
        model=subject.graph.model.name,
        settings={"granularity": groups.granularity, "allocation": regularizer.allocation.method},
        regularizer=regularizer,
        finished=finished,
        before=before,
        after=finished.after,
        sparse_flops=finished.sparse_flops,
        iterations={"regularize": regularizer.iteration, "finetune": 0},
        history=History([]),
        in_place=subject.in_place,
        seconds=0.0,
    )
    return RegularizeResult(
        model=finished.model,
        record=record,
        before=before,
        after=finished.after,
        sparse_flops=finished.sparse_flops,
        validation=finished.validation,
        module=subject.module,
        in_place=subject.in_place,
        reason=subject.reason,
    )
