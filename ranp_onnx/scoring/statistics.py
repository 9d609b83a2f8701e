"""Stage 3b, score: accumulate the loss gradient statistics that every criterion reads.

On a scoring copy of the model (a :class:`~ranp_onnx.scoring.evaluator.TorchGraph`: biases of
the scored layers zeroed, BatchNormalization on batch statistics, Dropout off, as the
reference does) each batch gives, per scored layer, the parameter mask gradients
``g * w`` (the gradient of the loss w.r.t. a multiplicative mask on each weight, at mask 1)
and the first-order Taylor term of each output channel. The running means over batches
are what the criteria in :mod:`ranp_onnx.selection.criteria` turn into neuron scores.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..analysis.channels import ChannelAnalysis
from ..errors import DataError
from ..ir.graph import GraphAnalysis
from ..ops import rule_for
from ..ops.normalization import OneValuePerChannelError
from ..progress import Progress
from . import distributed
from .batching import MicroBatches
from .data import LABELS_BY_LOSS, Batch, layout_for
from .sample_files import Layout, check_class_labels, samples_text

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class GradientStatistics:
    """Per-layer statistics of one scoring pass, in layer order.

    Attributes:
        batches: Batches averaged.
        magnitude: Mean over batches of ``|g * w|`` as ``[neurons, fan-in]`` (MPMG).
        signed: Mean over batches of ``g * w`` as ``[neurons, fan-in]`` (MNMG).
        taylor: Mean over batches of ``|mean over batch and space of a * dL/da|`` per
            output channel (Molchanov et al.).
        weights: The layers' weights as ``[neurons, fan-in]``.
        loss: Mean loss over the batches.
        device: Where the passes ran ("cpu", "cuda:0"; "" if none ran), with the number
            of ranks where several scored together ("cpu x 2 ranks").
    """

    batches: int
    magnitude: tuple[np.ndarray, ...]
    signed: tuple[np.ndarray, ...]
    taylor: tuple[np.ndarray, ...]
    weights: tuple[np.ndarray, ...]
    loss: float
    device: str = ""


@dataclass(frozen=True)
class Scoring:
    """A model's channel groups and scoring statistics: all a selection needs.

    Attributes:
        channels: The channel analysis.
        stats: The statistics of the scoring passes (:func:`weight_statistics` where the
            method needs no gradients).
        ignored: Per scored layer, True if it was left out of scoring (``ignore``).
        excluded: Per unit, True if it is out of the ranking (the ignored layers' units).
        fixed: Per unit, True if it is never removed (groups kept whole, ``keep``,
            ``ignore``).
    """

    channels: ChannelAnalysis
    stats: GradientStatistics
    ignored: tuple[bool, ...]
    excluded: np.ndarray
    fixed: np.ndarray


def weight_statistics(channels: ChannelAnalysis) -> GradientStatistics:
    """Statistics without a scoring pass: the weights, and zeros for every gradient term."""
    weights = layer_weights(channels)
    empty = tuple(np.zeros_like(w) for w in weights)
    return GradientStatistics(
        0, empty, empty, tuple(np.zeros(w.shape[0]) for w in weights), weights, 0.0
    )


def layer_weights(channels: ChannelAnalysis) -> tuple[np.ndarray, ...]:
    """The scored layers' weights as ``[neurons, fan-in]`` matrices (no gradients needed)."""
    from ..ir.static import static_value

    graph = channels.graph
    matrices = []
    for layer in channels.layers:
        node = graph.node(layer.node)
        rule = rule_for(node.op_type, node.domain)
        assert rule is not None
        matrices.append(rule.neuron_weights(node, static_value(graph, layer.weight)))
    return tuple(matrices)


def accumulate_gradients(
    channels: ChannelAnalysis,
    batches: Iterable[Batch],
    loss_name: str,
    *,
    ignore_index: int | None = None,
    device: str = "auto",
    batchnorm: str = "batch",
    total: int | None = None,
    progress: Progress | None = None,
    memory_check: bool = True,
) -> GradientStatistics:
    """Run the scoring passes and average the gradient statistics.

    Under torchrun (``WORLD_SIZE`` > 1) this rank scores its shard of the batches and the
    sums are all-reduced before averaging (:mod:`ranp_onnx.scoring.distributed`): every rank
    returns the statistics of all the batches.

    Args:
        channels: The channel analysis of the model.
        batches: The scoring data.
        loss_name: "cross-entropy", "dice-ce" or "mse".
        ignore_index: Label value the losses ignore.
        device: "auto" (CUDA when torch sees a GPU), "cpu" or "cuda".
        batchnorm: "batch" (the reference) or "running" statistics.
        total: Number of batches, for progress reports.
        progress: Called after every batch (with this rank's counts).
        memory_check: Before the first pass, estimate the memory scoring needs at the
            first batch's size and refuse if it exceeds the memory available
            (:mod:`ranp_onnx.scoring.memory`). Defaults to True.

    Raises:
        DataError: No batch was given, or a loss is not finite.
        InsufficientMemoryError: The estimate exceeds the available memory.
    """
    from .memory import check_scoring_memory

    world = distributed.world_from_env()
    torch_device = distributed.scoring_device(world, _torch_device(device))
    distributed.join(world, torch_device)
    scorer = _Scorer(channels, loss_name, ignore_index, torch_device, batchnorm)
    if total is not None:
        total = len(range(world.rank, total, world.size))
    for batch in distributed.shard(batches, world):
        if memory_check and scorer.count == 0:
            size = _batch_size(batch)
            chunk = max(scorer.batching.chunk(size, 1), 1)
            check_scoring_memory(
                channels.graph,
                chunk,
                torch_device,
                layers=[(layer.output, layer.weight) for layer in channels.layers],
                labels=batch.labels is not None,
                passes=-(-size // chunk),
            )
        scorer.add(batch)
        if progress is not None:
            progress(scorer.count, total)
    return scorer.result(world)


def _batch_size(batch: Batch) -> int:
    first = next(iter(batch.inputs.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


class _Scorer:
    """One scoring copy of the model and the running sums over batches."""

    def __init__(
        self,
        channels: ChannelAnalysis,
        loss_name: str,
        ignore_index: int | None,
        device: torch.device,
        batchnorm: str,
    ) -> None:
        import torch

        from .evaluator import TorchGraph
        from .losses import make_loss

        graph = channels.graph
        self.channels = channels
        self.device = device
        self.module = TorchGraph(graph, batchnorm=batchnorm).eval().to(device)  # type: ignore[arg-type]
        _zero_layer_biases(channels, self.module)
        output = graph.output_names[0]
        self.logits = logits_of(channels.graph, output)
        classes = graph.shape(output)[1] if len(graph.shape(output)) > 1 else 1
        self.loss = make_loss(loss_name, classes=classes, ignore_index=ignore_index)
        self.loss_name = loss_name
        self.ignore_index = ignore_index
        self.layout: Layout | None = None
        layers = channels.layers
        self.capture = list(
            dict.fromkeys([self.logits, *(x.output for x in layers), *(x.weight for x in layers)])
        )
        shapes = [graph.shape(layer.weight) for layer in layers]
        self.magnitude = [torch.zeros(shape, device=device) for shape in shapes]
        self.signed = [torch.zeros(shape, device=device) for shape in shapes]
        self.taylor = [torch.zeros(x.channels, dtype=torch.float64, device=device) for x in layers]
        self.taylor_sum = [torch.zeros_like(t) for t in self.taylor]
        self.taylor_count = [0 for _ in layers]
        self.batching = MicroBatches(graph)
        self.count = 0
        self.loss_sum = 0.0

    def add(self, batch: Batch) -> None:
        """Forward and backward one batch and add its statistics.

        A batch the graph does not run at in one pass runs forward in micro-batches
        (:class:`~ranp_onnx.scoring.batching.MicroBatches`); the loss is taken over the
        joined outputs, so the backward pass gives the gradient of the whole batch.
        """
        import torch

        self.module.zero_grad(set_to_none=True)
        size = _batch_size(batch)
        chunk = max(self.batching.chunk(size, self.count + 1), 1)
        self.taylor_sum = [torch.zeros_like(total) for total in self.taylor]
        self.taylor_count = [0] * len(self.taylor)
        passes = [
            self._forward(batch, start, start + chunk, size)
            for start in range(0, max(size, 1), chunk)
        ]
        logits = [captured[self.logits] for captured in passes]
        labels = None
        if batch.labels is not None:
            self._check_labels(batch.labels)
            labels = torch.from_numpy(batch.labels).to(self.device)
        try:
            loss = self.loss(logits[0] if len(logits) == 1 else torch.cat(logits), labels)
        except ValueError as error:
            raise DataError(f"batch {self.count + 1}: {error}") from error
        if not torch.isfinite(loss):
            raise DataError(
                f"the loss is {float(loss.detach())} on batch {self.count + 1}: check the data"
            )
        loss.backward()
        with torch.no_grad():
            for i, layer in enumerate(self.channels.layers):
                copies = list({id(p[layer.weight]): p[layer.weight] for p in passes}.values())
                gradient = sum((_gradient(weight) for weight in copies[1:]), _gradient(copies[0]))
                product = gradient * copies[0]
                self.magnitude[i] += product.abs()
                self.signed[i] += product
                if self.taylor_count[i]:
                    self.taylor[i] += (self.taylor_sum[i] / self.taylor_count[i]).abs()
        self.count += 1
        self.loss_sum += float(loss.detach())

    def _check_labels(self, labels: np.ndarray) -> None:
        """Refuse class labels out of range before the loss indexes with them."""
        if LABELS_BY_LOSS.get(self.loss_name) != "classes":
            return
        if self.layout is None:
            self.layout = layout_for(self.channels.graph, self.loss_name, self.ignore_index)
        samples = samples_text(0, labels.shape[0] if labels.ndim else 1)
        check_class_labels(labels, self.layout, f"batch {self.count + 1}: labels", samples)

    def _forward(self, batch: Batch, start: int, stop: int, size: int) -> dict[str, torch.Tensor]:
        """Run samples ``[start, stop)`` of a batch of ``size`` forward; hooks set for backward."""
        import torch

        feeds = {
            name: torch.from_numpy(
                np.ascontiguousarray(value if (start, stop) == (0, size) else value[start:stop])
            ).to(self.device)
            for name, value in batch.inputs.items()
        }
        try:
            captured = self.module.capture(feeds, self.capture)
        except OneValuePerChannelError as error:
            raise self.batching.one_value_per_channel(error, size) from error
        outputs = {layer.output for layer in self.channels.layers}
        for name in self.capture:
            if name not in outputs and captured[name].requires_grad and not captured[name].is_leaf:
                captured[name].retain_grad()
        for i, layer in enumerate(self.channels.layers):
            self._add_taylor_on_backward(i, captured[layer.output])
        return captured

    def _add_taylor_on_backward(self, layer: int, activation: torch.Tensor) -> None:
        """Add the layer's Taylor sums when its output's gradient arrives.

        A hook rather than ``retain_grad()``: the gradient of every layer output would
        otherwise stay alive until the end of the backward pass. Each pass adds the mean of
        ``a * dL/da`` over its samples and space times its element count, so that the
        batch's mean is exact however the batch was split.
        """
        if not activation.requires_grad:
            return
        # The closure holds a detached view, not the tensor it is registered on: no
        # reference cycle, so the batch's activations are freed by reference counting.
        value = activation.detach()

        def hook(gradient: torch.Tensor) -> None:
            import torch

            with torch.no_grad():
                term = value * gradient
                axes = [a for a in range(term.dim()) if a != 1]
                elements = term.numel() // max(int(term.shape[1]), 1)
                self.taylor_sum[layer] += term.mean(dim=axes).double() * elements
                self.taylor_count[layer] += elements

        activation.register_hook(hook)

    def result(self, world: distributed.World | None = None) -> GradientStatistics:
        """The averages (over every rank's batches where ``world`` has several ranks)."""
        import torch

        if world is not None and world.distributed:
            totals = torch.tensor(
                [self.count, self.loss_sum], dtype=torch.float64, device=self.device
            )
            distributed.all_reduce_sums(
                [*self.magnitude, *self.signed, *self.taylor, totals], world
            )
            self.count, self.loss_sum = round(float(totals[0])), float(totals[1])
        if self.count == 0:
            raise DataError("the scoring data gave no batch")
        graph = self.channels.graph
        nodes = [graph.node(layer.node) for layer in self.channels.layers]

        def matrices(sums: list[torch.Tensor]) -> tuple[np.ndarray, ...]:
            out = []
            for node, total in zip(nodes, sums):
                rule = rule_for(node.op_type, node.domain)
                assert rule is not None
                out.append(rule.neuron_weights(node, (total / self.count).cpu().numpy()))
            return tuple(out)

        return GradientStatistics(
            batches=self.count,
            magnitude=matrices(self.magnitude),
            signed=matrices(self.signed),
            taylor=tuple((t / self.count).cpu().numpy() for t in self.taylor),
            weights=layer_weights(self.channels),
            loss=self.loss_sum / self.count,
            device=str(self.device)
            + (f" x {world.size} ranks" if world and world.distributed else ""),
        )


def _gradient(tensor: torch.Tensor) -> torch.Tensor:
    import torch

    return tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)


def _torch_device(device: str) -> torch.device:
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise DataError("`device` cuda: torch sees no CUDA device")
    return torch.device("cuda" if torch.cuda.is_available() and device != "cpu" else "cpu")


def _zero_layer_biases(channels: ChannelAnalysis, module: object) -> None:
    """The reference zeroes biases in its scoring copy: bias terms then contribute 0."""
    import torch

    graph = channels.graph
    with torch.no_grad():
        for layer in channels.layers:
            node = graph.node(layer.node)
            rule = rule_for(node.op_type, node.domain)
            slot = rule.bias_input if rule is not None else None
            if (
                slot is not None
                and slot < len(node.inputs)
                and graph.is_initializer(node.inputs[slot])
            ):
                module.parameter(node.inputs[slot]).zero_()  # type: ignore[attr-defined]


def logits_of(graph: GraphAnalysis, output: str) -> str:
    """The tensor a loss reads: the output, or the logits before a final softmax."""
    producer = graph.producer(output)
    if producer is None:
        return output
    rule = rule_for(producer.op_type, producer.domain)
    logits = rule.logits_input(producer, graph) if rule is not None else None
    return logits if logits is not None else output
