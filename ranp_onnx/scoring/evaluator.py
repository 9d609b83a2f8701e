"""The round trip to torch: evaluate an ONNX graph op by op with torch operations.

:class:`TorchGraph` is a ``torch.nn.Module`` whose parameters are the model's float
initializers (leaf tensors, so ``loss.backward()`` fills ``.grad`` for every weight) and
whose ``forward`` asks each node's op rule to :meth:`~ranp_onnx.ops.base.OpRule.evaluate`
it. Shape sub-graphs (``Shape -> Gather -> Concat -> Reshape``) run on the actual tensors,
so one module serves any batch or spatial size the graph allows. RANP scores neurons with
the gradients this module gives; onnxruntime-training and onnx2torch cannot give them on
3D models (see the shared reference, section 6).

This module imports torch; ``import ranp_onnx`` does not import it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .. import ops
from ..errors import DataError, InternalError, UnsupportedModelError
from ..ir import runtime
from ..ir.graph import FLOAT_TYPES, GraphAnalysis, NodeInfo, last_uses, node_infos
from ..ir.load import LoadedModel, load_model
from ..ops.aliases import initializer_aliases
from ..ops.base import OpRule
from ..ops.contexts import EvalContext

#: How BatchNormalization normalises: "batch" statistics, "running" statistics, or "auto"
#: (batch statistics in training mode and where a node says ``training_mode=1``).
BatchNormMode = Literal["auto", "batch", "running"]


@dataclass(frozen=True)
class _Step:
    node: NodeInfo
    rule: OpRule
    release: tuple[str, ...]


class TorchGraph(torch.nn.Module):
    """An ONNX model as a differentiable torch module.

    Float initializers are ``nn.Parameter``s, except the running statistics of
    BatchNormalization and other inputs a rule reads as constants (resize scales), which
    are buffers like every non-float initializer. ``state_dict()`` keys are the ONNX
    initializer names; :meth:`parameter` looks a tensor up by that name. (The attributes
    behind them, which ``named_parameters()`` shows, spell '.', '/' and ':' as '_'.)

    An ``Identity`` node that copies an initializer becomes a tensor of its own, named by
    the node's output: the torchscript exporter stores parameters with equal values once
    (every fresh BatchNorm's ones and zeros) and recreates the torch names with such
    nodes; those parameters are not tied in the source model and are not tied here.

    The module starts in eval mode (an ONNX graph is an inference graph): ``train()``
    turns on batch statistics and Dropout; ``batchnorm`` overrides the former, e.g.
    ``TorchGraph(model, batchnorm="batch").eval()`` scores with batch statistics and no
    dropout, as RANP does.

    Args:
        model: A path, ModelProto, loaded model or analysis.
        batchnorm: "auto" (default: follow ``train()``/``eval()`` and each node's
            ``training_mode``), "batch" or "running". Kept in the attribute of that name.

    Attributes:
        batchnorm: The BatchNormalization mode; may be changed at any time.
        onnx_model: The model it was built from; :func:`ranp_onnx.to_onnx` writes it back
            with the current parameter values.
        update_running_stats: Whether batch statistics update the running statistics
            buffers (as torch's BatchNorm does). Defaults to True.
        aliases: Each alias of an initializer (:mod:`ranp_onnx.ops.aliases`), held as a
            tensor of its own, mapped to the initializer it was copied from.

    Raises:
        UnsupportedModelError: A node's op (or one of its attributes) has no torch
            evaluation; the message names the node.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | onnx.ModelProto | LoadedModel | GraphAnalysis,
        *,
        batchnorm: BatchNormMode = "auto",
    ) -> None:
        super().__init__()
        loaded = model.model if isinstance(model, GraphAnalysis) else load_model(model)
        graph = loaded.proto.graph
        nodes = model.nodes if isinstance(model, GraphAnalysis) else tuple(node_infos(graph))
        self.opset = runtime.default_opset(loaded.proto)
        self.onnx_model = loaded.proto
        self.batchnorm: BatchNormMode = batchnorm
        self.update_running_stats = True
        initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.input_names = tuple(v.name for v in graph.input if v.name not in initializers)
        self.output_names = tuple(v.name for v in graph.output)
        copies = initializer_aliases(nodes, initializers)
        self.aliases = copies
        nodes = tuple(node for node in nodes if not (node.outputs and node.outputs[0] in copies))
        rules = [_rule(node, self.opset) for node in nodes]
        self._steps = _plan(nodes, rules, self.output_names)
        self._attribute_of: dict[str, str] = {}
        buffer_names = _buffer_initializers(nodes, rules, {*initializers, *copies})
        for name in (*initializers, *copies):
            tensor = initializers[copies.get(name, name)]
            self._add_initializer(name, tensor, as_buffer=name in buffer_names)
        self._buffer_names = frozenset(buffer_names)
        self.train(False)

    def _add_initializer(self, name: str, tensor: onnx.TensorProto, *, as_buffer: bool) -> None:
        array = numpy_helper.to_array(tensor)
        if array.dtype.name == "bfloat16":
            value = torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
        else:
            if array.dtype in (np.uint16, np.uint32, np.uint64):
                array = array.astype(np.int64)
            value = torch.from_numpy(np.array(array, copy=True))
        attribute = self._free_attribute(name)
        self._attribute_of[name] = attribute
        if tensor.data_type in FLOAT_TYPES and not as_buffer:
            self.register_parameter(attribute, torch.nn.Parameter(value))
        else:
            self.register_buffer(attribute, value)

    def _free_attribute(self, name: str) -> str:
        base = re.sub(r"\W", "_", name) or "_"
        if base[0].isdigit():
            base = "_" + base
        candidate, suffix = base, 1
        while hasattr(self, candidate) or candidate in self._parameters:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        return candidate

    @property
    def initializer_names(self) -> tuple[str, ...]:
        """The ``state_dict`` keys: initializer names, then the untied Identity copies."""
        return tuple(self._attribute_of)

    def parameter(self, name: str) -> torch.Tensor:
        """Return the parameter or buffer holding initializer (or Identity copy) ``name``.

        Raises:
            KeyError: ``name`` is not an initializer of the model.
        """
        attribute = self._attribute_of[name]
        tensor: torch.Tensor | None = self._parameters.get(attribute)
        if tensor is None:
            tensor = self._buffers[attribute]
        assert tensor is not None
        return tensor

    @property
    def steps(self) -> tuple[tuple[NodeInfo, OpRule], ...]:
        """The nodes ``forward`` evaluates, in order, each with its op rule."""
        return tuple((step.node, step.rule) for step in self._steps)

    def named_initializers(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (ONNX name, tensor) for every initializer, parameters and buffers alike."""
        for name in self._attribute_of:
            yield name, self.parameter(name)

    def context(self, device: torch.device) -> EvalContext:
        """Return the evaluation settings of the current mode."""
        batchnorm_training: bool | None = {"batch": True, "running": False}.get(self.batchnorm)
        if self.batchnorm == "auto":
            batchnorm_training = True if self.training else None
        return EvalContext(
            opset=self.opset,
            batchnorm_training=batchnorm_training,
            dropout_training=self.training,
            device=device,
            buffers=self._buffer_names,
            update_running_stats=self.update_running_stats,
        )

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> Any:
        """Evaluate the graph.

        Args:
            *args: Graph inputs in declaration order.
            **kwargs: Graph inputs by name.

        Returns:
            The single graph output, or a tuple of them in declaration order.
        """
        values = self._run(self._bind(args, kwargs), self.output_names)
        results = tuple(values[name] for name in self.output_names)
        return results[0] if len(results) == 1 else results

    def capture(
        self, inputs: Mapping[str, torch.Tensor], names: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Evaluate the graph until the named tensors are computed, and return them.

        Intermediate tensors stay in the autograd graph: ``retain_grad()`` on them gives
        the loss gradient w.r.t. activations.

        Args:
            inputs: Graph inputs by name.
            names: Tensors to return (node outputs, graph inputs or initializers).

        Returns:
            The tensors by name.

        Raises:
            DataError: A name is not a tensor of the graph.
        """
        known = set(self.input_names) | set(self._attribute_of)
        known.update(name for step in self._steps for name in step.node.outputs)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise DataError(f"'{unknown[0]}' is not a tensor of the model")
        return self._run(self._bind((), inputs), names)

    def _run(
        self, bound: dict[str, torch.Tensor], wanted: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        values: dict[str, torch.Tensor | None] = dict(bound)
        device = next(
            (v.device for v in bound.values()),
            next((t.device for _, t in self.named_initializers()), torch.device("cpu")),
        )
        for name in self._attribute_of:
            values[name] = self.parameter(name)
        context = self.context(device)
        keep = set(wanted)
        remaining = {name for name in keep if name not in values}
        for step in self._steps:
            if not remaining:
                break
            node = step.node
            inputs = [values[name] if name else None for name in node.inputs]
            outputs = step.rule.evaluate(node, inputs, context)
            for position, name in enumerate(node.outputs):
                if name:
                    values[name] = outputs[position] if position < len(outputs) else None
                    remaining.discard(name)
            for name in step.release:
                if name not in keep:
                    values.pop(name, None)
        found = {name: values.get(name) for name in wanted}
        missing = [name for name, value in found.items() if value is None]
        if missing:
            raise UnsupportedModelError(f"tensor '{missing[0]}' was not computed")
        return {name: value for name, value in found.items() if value is not None}

    def _bind(
        self, args: Sequence[torch.Tensor], kwargs: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        if len(args) > len(self.input_names):
            raise DataError(
                f"the model takes {len(self.input_names)} inputs "
                f"({', '.join(self.input_names)}), got {len(args)}"
            )
        bound = dict(zip(self.input_names, args))
        for name, value in kwargs.items():
            if name not in self.input_names:
                raise DataError(f"'{name}' is not an input of the model")
            if name in bound:
                raise DataError(f"input '{name}' given twice")
            bound[name] = value
        missing = [name for name in self.input_names if name not in bound]
        if missing:
            raise DataError(f"missing model input '{missing[0]}'")
        return {
            name: value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
            for name, value in bound.items()
        }

    def _save_to_state_dict(
        self, destination: dict[str, Any], prefix: str, keep_vars: bool
    ) -> None:
        for name, tensor in self.named_initializers():
            destination[prefix + name] = tensor if keep_vars else tensor.detach()

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Read the ONNX-named keys into the escaped attributes, then load as usual."""
        renamed = {
            prefix + self._attribute_of[key[len(prefix) :]]: state_dict.pop(key)
            for key in list(state_dict)
            if key.startswith(prefix) and key[len(prefix) :] in self._attribute_of
        }
        collisions = [key for key in renamed if key in state_dict]
        for key in collisions:
            unexpected_keys.append(key)
            del state_dict[key]
        state_dict.update(renamed)
        before = len(missing_keys), len(unexpected_keys)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        onnx_name = {prefix + a: prefix + n for n, a in self._attribute_of.items()}
        missing_keys[before[0] :] = [onnx_name.get(k, k) for k in missing_keys[before[0] :]]


def _rule(node: NodeInfo, opset: int) -> OpRule:
    rule = ops.rule_for(node.op_type, node.domain)
    domain = f" (domain '{node.domain}')" if node.domain not in ("", "ai.onnx") else ""
    if rule is None:
        raise UnsupportedModelError(
            f"node '{node.name}': op '{node.op_type}'{domain} cannot be evaluated with torch "
            "(ranp-onnx has no rule for it)"
        )
    problem = rule.evaluation_problem(node, opset)
    if problem is not None:
        raise UnsupportedModelError(f"node '{node.name}' ({node.op_type}{domain}): {problem}")
    return rule


def _plan(
    nodes: Sequence[NodeInfo], rules: Sequence[OpRule], outputs: Sequence[str]
) -> tuple[_Step, ...]:
    """Pair nodes with rules and note after which node each value is no longer needed."""
    last_use = last_uses(nodes)
    kept = set(outputs)
    release: dict[int, list[str]] = {}
    for name, position in last_use.items():
        if name not in kept:
            release.setdefault(position, []).append(name)
    if len(nodes) != len(rules):
        raise InternalError("one rule per node expected")
    return tuple(
        _Step(node, rule, tuple(sorted(release.get(position, ()))))
        for position, (node, rule) in enumerate(zip(nodes, rules))
    )


def _buffer_initializers(
    nodes: Sequence[NodeInfo], rules: Sequence[OpRule], initializers: Collection[str]
) -> set[str]:
    """Float initializers that every consumer reads as a constant, not as a weight."""
    as_buffer: dict[str, bool] = {}
    for node, rule in zip(nodes, rules):
        for position, name in enumerate(node.inputs):
            if name in initializers:
                constant = position in rule.buffer_inputs
                as_buffer[name] = as_buffer.get(name, True) and constant
    return {name for name, constant in as_buffer.items() if constant}
