"""One training step played on the ledger: forward, loss, backward, optimizer step.

The step is the one :mod:`ranp_onnx.training_step` runs in torch: the ``to_torch`` module
in training mode evaluates the graph node by node up to the loss input (a final Softmax
over the classes is left out, as the scorer and the original module in training mode do),
the cross-entropy (mse for an output without a class axis) reads it, ``backward()`` runs,
then the optimizer steps. The caller keeps the loss input until the step ends, as
``output = model(x)`` does. Gradients were set to None before the step; optimizer state
exists (the step is the second or a later one).

Each node's rule says what its torch evaluation keeps for the backward pass and what its
passes allocate (:meth:`~ranp_onnx.ops.base.OpRule.autograd_memory`); the forward follows
:class:`~ranp_onnx.torch_graph.TorchGraph`'s order and releases a value after its last
reader, the backward visits the nodes in reverse and merges gradients the way autograd's
input buffers do (in place into an exclusively owned buffer, else a new sum). Under
autocast a rule's policy decides the precision: inputs are cast into new tensors
(parameters once per step, cached as torch's autocast does).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import onnx

from ...ir.graph import GraphAnalysis, NodeInfo, last_uses
from ...ops import rule_for
from ...ops.base import AutogradMemory, TrainingContext
from .gradients import GradientBuffers, NodeRecord
from .loss import LOWER, loss_memory, optimizer_scratch, optimizer_state
from .timeline import INPUTS, PARAMETERS, SAVED, STATE, Handle, Ledger

_FLOATS = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
    }
)


@dataclass(frozen=True)
class PassSettings:
    """What the ledger plays.

    Attributes:
        device: "cpu" or "cuda".
        optimizer: "sgd", "momentum", "adam", "adamw" or None (no optimizer: scoring).
        autocast: True to run under autocast (float16 on CUDA, bfloat16 on CPU).
        training: Module in training mode (Dropout drops).
        loss_input: The tensor the loss reads.
        kept: Tensors the caller holds until the step ends (the loss input, captures).
        retained: Tensors whose gradient the caller keeps (``retain_grad``).
        hooked: Tensors with a gradient hook that multiplies the gradient by the value.
        labels: True if the batch has labels (else the loss makes them from the output).
        update_scratch: Bytes allocated and freed after the backward, beside the
            optimizer's own temporaries (the scorer's products of weights and gradients).
    """

    device: str
    optimizer: str | None
    autocast: bool
    training: bool
    loss_input: str
    kept: frozenset[str] = frozenset()
    retained: frozenset[str] = frozenset()
    hooked: frozenset[str] = frozenset()
    labels: bool = True
    update_scratch: int = 0


@dataclass(frozen=True)
class PlayedStep:
    """What the ledger saw.

    Attributes:
        ledger: The ledger after the step (its peak and breakdown).
        saved_after_forward: Bytes autograd held when the loss was computed.
        parameter_count: Trainable parameters (elements).
    """

    ledger: Ledger
    saved_after_forward: int
    parameter_count: int


def play_step(graph: GraphAnalysis, settings: PassSettings) -> PlayedStep:
    """Play one step of ``graph`` (analysed at the training shapes) on a ledger."""
    step = _Step(graph, settings)
    step.forward()
    saved = step.loss_forward()
    step.backward()
    step.optimizer_step()
    step.finish()
    return PlayedStep(step.ledger, saved, step.parameter_count)


class _Step:
    def __init__(self, graph: GraphAnalysis, settings: PassSettings) -> None:
        self.graph, self.settings, self.ledger = graph, settings, Ledger()
        nodes, copies = _nodes_run(graph, {settings.loss_input, *settings.kept})
        self.nodes = nodes
        self.itemsize = {name: info.itemsize for name, info in graph.tensors.items()}
        self.values: dict[str, Handle] = {}
        self.requires: set[str] = set()
        self.parameters: dict[str, Handle] = {}
        buffers = _buffers(graph, nodes, {*graph.initializer_names, *copies})
        for name in (*graph.initializer_names, *copies):
            info = graph.tensors[copies.get(name, name)]
            self.values[name] = self.ledger.new(info.nbytes, PARAMETERS)
            if info.elem_type in _FLOATS and name not in buffers:
                self.parameters[name] = self.values[name]
                self.requires.add(name)
        self.parameter_count = sum(
            graph.tensors[copies.get(name, name)].numel for name in self.parameters
        )
        sizes = [handle.nbytes for handle in self.parameters.values()]
        for state in optimizer_state(settings.optimizer, sizes):
            self.ledger.new(state, STATE)
        for name in graph.input_names:
            self.values[name] = self.ledger.new(graph.tensors[name].nbytes, INPUTS)
        # The module holds its parameters and buffers, the caller the batch.
        self.held = frozenset(self.values)
        self.records: list[NodeRecord] = []
        self.casts: dict[str, Handle] = {}
        self.buffers = GradientBuffers(self.ledger, self.parameters)
        self.retained: list[Handle] = []
        self.loss_saved: list[Handle] = []

    # -- forward -------------------------------------------------------------------------

    def forward(self) -> None:
        last_use = last_uses(self.nodes)
        for position, node in enumerate(self.nodes):
            self.ledger.at("forward", node.name)
            self._forward_node(node)
            for name in (*node.inputs, *node.outputs):
                if last_use.get(name) == position and name not in self.settings.kept:
                    handle = self.values.pop(name, None)
                    if handle is not None and name not in self.held:
                        self.ledger.drop(handle)

    def _forward_node(self, node: NodeInfo) -> None:
        rule = rule_for(node.op_type, node.domain)
        if rule is None or not any(name in self.values for name in node.inputs if name):
            return
        policy = rule.autocast.get(self.settings.device) if self.settings.autocast else None
        inputs, casts, temporary = self._cast_inputs(node, policy)
        out_size = self._output_itemsize(node, policy, inputs, casts)
        grad = any(name in self.requires for name in node.inputs if name)
        sizes = {**self.itemsize, **{node.inputs[p]: s for p, s in casts.items()}}
        for name in node.outputs:
            if name and self._is_float(name):
                sizes[name] = out_size
                if grad:
                    self.requires.add(name)
        context = TrainingContext(
            self.settings.device, sizes, frozenset(self.requires), self.settings.training
        )
        memory = rule.autograd_memory(node, self.graph, context)
        outputs = self._make_outputs(node, memory, inputs, sizes)
        self.ledger.spike(memory.forward_scratch)
        if grad:
            saved = [
                self.ledger.hold(inputs[p], saved=True) for p in memory.saved_inputs if p in inputs
            ]
            saved += [
                self.ledger.hold(outputs[p], saved=True)
                for p in memory.saved_outputs
                if p in outputs
            ]
            if memory.saved_bytes:
                own = self.ledger.new(memory.saved_bytes)
                saved.append(self.ledger.hold(own, saved=True))
                self.ledger.drop(own)
            self.records.append(NodeRecord(self.graph, node, memory, inputs, saved, casts))
        for handle in temporary:
            self.ledger.drop(handle)
        for name, size in sizes.items():
            if name in node.outputs:
                self.itemsize[name] = size

    def _cast_inputs(
        self, node: NodeInfo, policy: str | None
    ) -> tuple[dict[int, Handle], dict[int, int], list[Handle]]:
        """The node's input tensors, cast under autocast: (handles, cast sizes, temporaries)."""
        inputs = {p: self.values[n] for p, n in enumerate(node.inputs) if n in self.values}
        if policy is None:
            return inputs, {}, []
        floats = [p for p, name in enumerate(node.inputs) if p in inputs and self._is_float(name)]
        widest = max((self.itemsize[node.inputs[p]] for p in floats), default=4)
        target = {"lower": LOWER, "float32": 4}.get(policy, widest)
        casts, temporary = {}, []
        for position in floats:
            name = node.inputs[position]
            if self.itemsize[name] == target or (
                policy == "promote" and self.settings.device != "cpu"
            ):
                continue
            count = self.graph.tensors[name].numel
            if name in self.parameters and policy == "lower":
                if name not in self.casts:
                    self.casts[name] = self.ledger.new(count * target)
                inputs[position] = self.casts[name]
            else:
                inputs[position] = self.ledger.new(count * target)
                temporary.append(inputs[position])
            casts[position] = target
        return inputs, casts, temporary

    def _output_itemsize(
        self,
        node: NodeInfo,
        policy: str | None,
        inputs: Mapping[int, Handle],
        casts: Mapping[int, int],
    ) -> int:
        if policy == "lower":
            return LOWER
        if policy == "float32":
            return 4
        sizes = [
            casts.get(p, self.itemsize[node.inputs[p]])
            for p in inputs
            if self._is_float(node.inputs[p])
        ]
        if policy == "promote" and sizes:
            return max(sizes)
        return sizes[0] if sizes else 4

    def _make_outputs(
        self,
        node: NodeInfo,
        memory: AutogradMemory,
        inputs: Mapping[int, Handle],
        sizes: Mapping[str, int],
    ) -> dict[int, Handle]:
        outputs = {}
        for position, name in enumerate(node.outputs):
            if not name or name not in self.graph.tensors:
                continue
            nbytes = self.graph.tensors[name].numel * sizes.get(name, self.itemsize[name])
            if position in memory.output_views and 0 in inputs:
                handle = self.ledger.hold(Handle(inputs[0].storage, nbytes))
            else:
                handle = self.ledger.new(nbytes)
            self.values[name] = outputs[position] = handle
        return outputs

    def _is_float(self, name: str) -> bool:
        info = self.graph.tensors.get(name)
        return info is not None and info.elem_type in _FLOATS

    # -- loss ----------------------------------------------------------------------------

    def loss_forward(self) -> int:
        """The loss's forward; returns the bytes autograd holds at its end."""
        self.ledger.at("loss")
        name = self.settings.loss_input
        self.loss = loss_memory(
            self.graph.shape(name),
            self.itemsize[name],
            device=self.settings.device,
            autocast=self.settings.autocast,
        )
        if self.settings.labels:
            self.ledger.new(self.loss.labels, INPUTS)
        else:  # made from the output (argmax) and kept by nll_loss
            self.loss_saved.append(self._saved_new(self.loss.labels))
        if self.loss.keeps_input:
            self.loss_saved.append(self.ledger.hold(self.values[name], saved=True))
        self.ledger.spike(self.loss.forward_scratch)
        self.loss_saved += [self._saved_new(nbytes) for nbytes in self.loss.saved]
        # Leaving autocast clears its cache of cast parameters (saved ones stay saved).
        for handle in self.casts.values():
            self.ledger.drop(handle)
        self.casts.clear()
        return self.ledger.total(SAVED)

    def _saved_new(self, nbytes: int) -> Handle:
        handle = self.ledger.new(nbytes)
        self.ledger.hold(handle, saved=True)
        self.ledger.drop(handle)
        return handle

    def _loss_backward(self) -> Handle:
        """Each backward of the loss allocates its input gradient, then frees what it read."""
        self.ledger.at("backward", "loss")
        first = len(self.loss_saved) - len(self.loss.saved)
        released: set[int] = set()
        previous: Handle | None = None
        for nbytes, release in self.loss.backward:
            gradient = self.ledger.new(nbytes)
            if previous is not None:
                self.ledger.drop(previous)
            for position in release:
                self.ledger.drop(self.loss_saved[first + position], saved=True)
                released.add(first + position)
            previous = gradient
        for position, handle in enumerate(self.loss_saved):
            if position not in released:
                self.ledger.drop(handle, saved=True)
        assert previous is not None
        return previous

    # -- backward ------------------------------------------------------------------------

    def backward(self) -> None:
        self.buffers.pending[self.settings.loss_input] = self._loss_backward()
        for record in reversed(self.records):
            node = record.node
            ready = [(p, n) for p, n in enumerate(node.outputs) if n in self.buffers.pending]
            if not ready:
                continue
            self.ledger.at("backward", node.name)
            out_grads = {p: self.buffers.pending.pop(n) for p, n in ready}
            for position, name in ready:
                if name in self.settings.hooked:
                    self.ledger.spike(out_grads[position].nbytes)
                if name in self.settings.retained:
                    self.retained.append(self.ledger.hold(out_grads[position]))
            produced = record.input_gradients(
                self.ledger, self.requires, self.itemsize, out_grads.get(0)
            )
            self.ledger.spike(record.memory.backward_scratch)
            produced = record.cast_back(self.ledger, produced, self.itemsize)
            for handle in out_grads.values():
                self.ledger.drop(handle)
            for handle in record.saved:
                self.ledger.drop(handle, saved=True)
            record.saved.clear()
            for name, handle in produced:
                self.buffers.add(name, handle)
        self.ledger.at("backward", None)
        for record in self.records:  # branches the loss does not read
            for handle in record.saved:
                self.ledger.drop(handle, saved=True)
        self.buffers.release()

    # -- optimizer -----------------------------------------------------------------------

    def optimizer_step(self) -> None:
        """The step's temporaries (the state exists already)."""
        self.ledger.at("optimizer step")
        sizes = [handle.nbytes for handle in self.parameters.values()]
        scratch = optimizer_scratch(self.settings.optimizer, sizes, self.settings.device)
        self.ledger.spike(scratch + self.settings.update_scratch)

    def finish(self) -> None:
        """The caller lets go of the tensors it held (and of retained gradients)."""
        self.ledger.at("end", None)
        for handle in self.retained:
            self.ledger.drop(handle)
        for name in self.settings.kept:
            kept = self.values.pop(name, None)
            if kept is not None and name not in self.held:
                self.ledger.drop(kept)


def _nodes_run(
    graph: GraphAnalysis, wanted: Collection[str]
) -> tuple[list[NodeInfo], dict[str, str]]:
    """The nodes ``TorchGraph`` runs to compute ``wanted``, and its parameter copies.

    An Identity of an initializer becomes a parameter of its own (named by its output);
    evaluation stops once every wanted tensor is computed.
    """
    copies: dict[str, str] = {}
    nodes = []
    for node in graph.nodes:
        source = node.inputs[0] if node.inputs else ""
        if node.op_type == "Identity" and (graph.is_initializer(source) or source in copies):
            copies[node.outputs[0]] = copies.get(source, source)
        else:
            nodes.append(node)
    remaining = {name for name in wanted if graph.producer(name) is not None}
    run = []
    for node in nodes:
        if not remaining:
            break
        run.append(node)
        remaining.difference_update(node.outputs)
    return run, copies


def _buffers(graph: GraphAnalysis, nodes: list[NodeInfo], stored: Collection[str]) -> set[str]:
    """Stored tensors every consumer reads as a constant (running statistics, scales)."""
    constant: dict[str, bool] = {}
    for node in nodes:
        rule = rule_for(node.op_type, node.domain)
        for position, name in enumerate(node.inputs):
            if name in stored:
                read_as = rule is not None and position in rule.buffer_inputs
                constant[name] = constant.get(name, True) and read_as
    return {name for name, flag in constant.items() if flag}
