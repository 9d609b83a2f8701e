"""PyTorch first: prune a user's ``nn.Module`` and get the same module back, smaller.

:func:`prune_module` exports the module with the torchscript exporter (parameter names
kept, batch axis dynamic), prunes the export with :func:`~ranp_onnx.pipeline.prune`, and
shrinks the user's own layers in place to the pruned shapes
(:mod:`~ranp_onnx.torch_api.shrink`, matched through the ONNX initializer names, which are the
``state_dict`` keys). The shrunk module is then run on the example inputs and must give
the pruned ONNX model's outputs (in onnxruntime). Where it cannot (a forward with a
hard-coded channel count, say), the module is put back exactly as it was and the result
holds :func:`~ranp_onnx.torch_api.round_trip.to_torch` of the pruned model instead, with the
reason, which is also given as a warning.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from ..analysis.costs import CostReport
from ..analysis.shapes import analyse
from ..errors import PlanError, ValidationError
from ..ir import runtime
from ..pipeline import PruneOptions, PruneResult, prune
from ..rewrite.oracle import ValidationResult
from ..rewrite.reinit import reinitialize
from ..scoring.module_data import ModuleData, scoring_batches
from ..selection.plan import PrunePlan
from .export import export_for_pruning
from .round_trip import to_torch
from .shrink import (
    ShrinkError,
    ShrinkJournal,
    recording_input_channels,
    set_parameterless_channels,
    shrink_in_place,
)

#: Warning torch's InstanceNorm gives while its ``num_features`` is being corrected.
_STALE_FEATURES = "input's size at dim=.* does not match num_features"


@dataclass(frozen=True)
class PrunedModule:
    """What :func:`prune_module` produced.

    Attributes:
        module: The user's module shrunk in place (``in_place``), or else
            ``to_torch(onnx_model)``; in the user module's train/eval mode and on its device.
        in_place: True if ``module`` is the user's own object, shrunk.
        reason: Why it is not (None if it is).
        plan: The pruning plan.
        before: Costs of the export.
        after: Costs of the pruned model.
        onnx_model: The pruned ONNX model (re-initialised if asked).
        validation: The rewrite's onnxruntime proof, or None if validation was off.
        module_error: Max |module - onnx_model| over the example inputs' outputs, relative
            to the output scale (the module run in eval mode).
    """

    module: nn.Module
    in_place: bool
    reason: str | None
    plan: PrunePlan
    before: CostReport
    after: CostReport
    onnx_model: onnx.ModelProto
    validation: ValidationResult | None
    module_error: float

    @property
    def neuron_sparsity(self) -> float:
        """The fraction of neurons removed."""
        return float(self.plan.achieved["neuron_sparsity"])


def prune_module(
    module: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    data: ModuleData,
    *,
    options: PruneOptions | None = None,
    batches: int | None = None,
    batch_size: int = 1,
    in_place: bool = True,
    **settings: Any,
) -> PrunedModule:
    """Prune a torch module at initialization and shrink it in place.

    Example::

        result = ranp_onnx.prune_module(net, torch.randn(1, 1, 32, 32, 32), loader,
                                        sparsity=0.7, method="ranp-f", lam=11)
        net = result.module  # the same object when result.in_place

    Args:
        module: The network, in its initial state.
        example_inputs: One input tensor, or a sequence of them: what the module is traced
            with, the shapes costs are counted at, and what the check runs on.
        data: Scoring data: an iterable of ``(inputs, labels)`` pairs (a DataLoader), of
            inputs alone, or of :class:`~ranp_onnx.scoring.data.Batch`; a ``.npz`` file or
            folder; ``"random"``; or None for criteria without gradients.
        options: Pruning options; ``settings`` override its fields. Defaults to
            ``PruneOptions()``.
        batches: Score on at most this many batches. Defaults to all of ``data``.
        batch_size: Samples per batch of a file or ``"random"`` source. Defaults to 1.
        in_place: Shrink the user's module; False returns ``to_torch`` of the pruned
            model and leaves the module alone. Defaults to True.
        **settings: Any :class:`~ranp_onnx.pipeline.PruneOptions` field: exactly one of
            ``sparsity``, ``target_flops``, ``target_memory``; ``method`` (default
            "ranp-f"), ``lam`` (11), ``loss`` ("cross-entropy"), ``ignore_index``,
            ``reinit`` (False: keep the initial weights of the kept channels; True:
            re-initialise as the paper does before training from scratch), ``seed``...

    Returns:
        The pruned module, plan, costs and pruned ONNX model.

    Raises:
        TypeError: A setting is not a PruneOptions field.
        RanpError: Bad data or options, an export the tool cannot prune, or a rewrite
            that fails its proof.
    """
    options = _options(options, settings)
    inputs = (
        (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    )
    result = _prune_export(module, inputs, data, options, batches, batch_size)
    returned, reason, error = adopt_pruned(
        module,
        result.model,
        inputs,
        tolerance=options.tolerance,
        reinit=options.reinit,
        in_place=in_place,
        caller="prune_module",
    )
    return PrunedModule(
        module=returned,
        in_place=reason is None,
        reason=reason,
        plan=result.plan,
        before=result.before,
        after=result.after,
        onnx_model=result.model,
        validation=result.validation,
        module_error=error,
    )


def adopt_pruned(
    module: nn.Module,
    pruned: onnx.ModelProto,
    inputs: Sequence[torch.Tensor],
    *,
    tolerance: float,
    reinit: bool = False,
    in_place: bool = True,
    caller: str = "prune_module",
) -> tuple[nn.Module, str | None, float]:
    """Shrink ``module`` in place to a pruned export of it, or fall back to ``to_torch``.

    The shrunk module must give the pruned model's outputs (onnxruntime) on ``inputs``;
    where it cannot, the module is restored and ``to_torch(pruned)`` returned, with the
    reason (also warned, naming ``caller``).

    Returns:
        The module to use, why it is not the user's own (None if it is), and its largest
        difference from the pruned model relative to the output scale.
    """
    names = [value.name for value in pruned.graph.input]
    feeds = {name: x.detach().cpu().numpy() for name, x in zip(names, inputs)}
    expected = [np.asarray(y) for y in runtime.make_session(pruned).run(None, feeds)]
    reason = None if in_place else "in-place shrinking was not asked for"
    error = 0.0
    if in_place:
        error, reason = _shrink_and_check(module, pruned, inputs, expected, tolerance, reinit)
        if reason is not None:
            warnings.warn(f"{caller}: {reason}", stacklevel=3)
    returned = module
    if reason is not None:
        returned, error = _fallback(module, pruned, inputs, expected, tolerance)
    return returned, reason, error


def _prune_export(
    module: nn.Module,
    inputs: Sequence[torch.Tensor],
    data: ModuleData,
    options: PruneOptions,
    batches: int | None,
    batch_size: int,
) -> PruneResult:
    """Export, score, select, rewrite and prove; re-initialise the module's tensors if asked."""
    exported = export_for_pruning(module, inputs)
    shapes = {value.name: tuple(x.shape) for value, x in zip(exported.graph.input, inputs)}
    graph = analyse(exported, shapes)
    scoring, total = scoring_batches(
        data,
        graph,
        loss=options.loss,
        ignore_index=options.ignore_index,
        batches=batches,
        batch_size=batch_size,
        seed=options.seed,
    )
    result = prune(graph, scoring, dataclasses.replace(options, reinit=False), total_batches=total)
    if options.reinit:
        result = _reinitialized(result, set(module.state_dict()), options.seed)
    return result


def _options(options: PruneOptions | None, settings: dict[str, Any]) -> PruneOptions:
    fields = {f.name for f in dataclasses.fields(PruneOptions)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise TypeError(
            f"prune_module() got an unknown option '{unknown[0]}' (PruneOptions has "
            f"{', '.join(sorted(fields))})"
        )
    options = dataclasses.replace(options or PruneOptions(), **settings)
    targets = (options.sparsity, options.target_flops, options.target_memory)
    if sum(target is not None for target in targets) != 1:
        raise PlanError("give exactly one of sparsity, target_flops and target_memory")
    return options


def _shrink_and_check(
    module: nn.Module,
    pruned: onnx.ModelProto,
    inputs: Sequence[torch.Tensor],
    expected: Sequence[np.ndarray],
    tolerance: float,
    reinit: bool,
) -> tuple[float, str | None]:
    """Shrink, run, compare; restore the module unless it reproduces the pruned model."""
    name = type(module).__name__
    try:
        journal = shrink_in_place(module, pruned)
    except ShrinkError as problem:
        return (
            0.0,
            f"{name} cannot be shrunk in place ({problem}); returning to_torch(pruned model)",
        )
    try:
        with recording_input_channels(module, journal) as seen, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_STALE_FEATURES)
            error = _module_error(module, inputs, expected)
        set_parameterless_channels(seen, journal)
        if reinit:
            _reset_batch_counts(module, journal)
    except _Mismatch as mismatch:
        journal.restore()
        return 0.0, (
            f"the shrunk {name} does not give the pruned model's outputs ({mismatch}); "
            "returning to_torch(pruned model) instead"
        )
    except Exception as failure:  # the user's forward: anything can happen
        journal.restore()
        first = (str(failure).strip().splitlines() or [""])[0]
        return 0.0, (
            f"the shrunk {name} fails in its forward ({type(failure).__name__}: {first}); it "
            "likely hard-codes channel counts, returning to_torch(pruned model) instead"
        )
    if not error <= tolerance:
        journal.restore()
        return error, (
            f"the shrunk {name} differs from the pruned model by {error:.3g} of the output "
            f"scale (tolerance {tolerance:g}); its forward likely depends on channel "
            "counts, returning to_torch(pruned model) instead"
        )
    return error, None


class _Mismatch(Exception):
    """The module's outputs do not line up with the pruned model's."""


def _module_error(
    module: nn.Module, inputs: Sequence[torch.Tensor], expected: Sequence[np.ndarray]
) -> float:
    """Max relative difference between the module (eval mode) and the expected outputs."""
    training = module.training
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    module.eval()
    # TF32 (on by default for cuDNN convolutions) is far coarser than the tolerance.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            outputs = _flatten(module(*inputs))
    finally:
        module.train(training)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    if len(outputs) != len(expected):
        raise _Mismatch(f"{len(outputs)} outputs, the pruned model has {len(expected)}")
    worst = 0.0
    for actual, want in zip(outputs, expected):
        got = actual.detach().cpu().numpy()
        if got.shape != want.shape:
            raise _Mismatch(f"an output is {list(got.shape)}, expected {list(want.shape)}")
        if want.size == 0:
            continue
        scale = float(np.abs(want).max())
        difference = float(np.abs(got.astype(np.float64) - want).max())
        worst = max(worst, difference / scale if scale > 0 else difference)
    return worst


def _flatten(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in _flatten(item)]
    return []


def _fallback(
    module: nn.Module,
    pruned: onnx.ModelProto,
    inputs: Sequence[torch.Tensor],
    expected: Sequence[np.ndarray],
    tolerance: float,
) -> tuple[nn.Module, float]:
    """``to_torch`` of the pruned model, in the module's mode and on its device, checked."""
    graph = to_torch(pruned).train(module.training)
    tensor = next(iter(module.parameters()), None)
    if tensor is not None:
        graph = graph.to(tensor.device)
    try:
        error = _module_error(graph, inputs, expected)
    except _Mismatch as mismatch:
        raise ValidationError(f"to_torch of the pruned model: {mismatch}") from mismatch
    if not error <= tolerance:
        raise ValidationError(
            f"to_torch of the pruned model differs from onnxruntime by {error:.3g}"
        )
    return graph, error


def _reinitialized(result: PruneResult, names: set[str], seed: int) -> PruneResult:
    """Re-draw the pruned model's parameters as the paper does, the module's tensors only.

    Constants the rewrite made initializers (the ones and zeros of a non-affine
    InstanceNorm) keep their values: the module has no parameter for them.
    """
    fresh = reinitialize(result.model, seed=seed)
    original = {tensor.name: tensor for tensor in result.model.graph.initializer}
    for tensor in fresh.graph.initializer:
        if tensor.name not in names:
            tensor.CopyFrom(original[tensor.name])
    plan = dataclasses.replace(result.plan, settings={**result.plan.settings, "reinit": True})
    return dataclasses.replace(result, model=fresh, plan=plan)


def _reset_batch_counts(module: nn.Module, journal: ShrinkJournal) -> None:
    """Fresh running statistics also count no batches (re-initialisation)."""
    for layer in module.modules():
        count = getattr(layer, "num_batches_tracked", None)
        if isinstance(count, torch.Tensor) and int(count) != 0:
            journal.overwrite(count, torch.zeros_like(count))
