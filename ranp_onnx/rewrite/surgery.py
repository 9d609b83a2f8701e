"""Stage 5, rewrite: a new, physically smaller ONNX model from the kept channels.

Every static tensor with a channel space (weights, biases, normalisation parameters,
per-channel constants) is sliced along it; op rules then fix what slicing alone cannot
(grouped-conv weights, ``group`` attributes, Split sizes, Slice bounds, hard-coded
Reshape and Resize shapes). Static tensors that are computed rather than stored (e.g. the
``Identity`` copies the torchscript exporter makes of equal initializers) become
initializers of their own. Stale intermediate shapes are cleared and re-inferred, and the
result passes ``onnx.checker.check_model(full_check=True)``. This is the only stage that
edits initializers, and it never modifies its input.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..analysis.channels import ChannelAnalysis
from ..errors import InternalError, PlanError, ValidationError, last_line
from ..ir import runtime
from ..ir.graph import GraphAnalysis
from ..ir.static import static_value
from ..ops import rule_for
from ..ops.contexts import RewriteContext


def rewrite(channels: ChannelAnalysis, keep: np.ndarray) -> onnx.ModelProto:
    """Build the pruned model.

    Args:
        channels: The channel analysis of the original model.
        keep: Keep flag per unit.

    Returns:
        A new ModelProto; the original is not modified.
    """
    graph = channels.graph
    context = RewriteContext(graph=graph, kept=channels.kept_indices(keep))
    for (tensor, _), indices in context.kept.items():
        info = graph.tensors.get(tensor)
        if indices.size == 0 and info is not None and not info.static:
            raise PlanError(f"the selection leaves tensor '{tensor}' with no channels")
    _slice_static_tensors(context, channels.recomputed, channels.stored)
    _regenerate(context, channels.regenerated)
    for node in graph.nodes:
        if not context.changed(node):
            continue
        rule = rule_for(node.op_type, node.domain)
        if rule is None:
            raise InternalError(
                f"node '{node.name}' lost channels but op '{node.op_type}' has no rule"
            )
        rule.rewrite(node, graph, context)
    _freeze_unpruned_dependents(context, channels.recomputed)
    return _apply(graph, context)


def _freeze_unpruned_dependents(context: RewriteContext, recomputed: frozenset[str]) -> None:
    """Give static tensors computed from a changed one, but not pruned, their own value.

    torch's exporter feeds equal initializers (BatchNorm scales of 1 at initialization) to
    several layers through ``Identity`` aliases of one of them. When that one is sliced,
    an alias whose layer keeps all its channels must keep its value rather than follow.
    """
    graph = context.graph
    changed = set(context.values) | recomputed
    for name in sorted(changed):
        for node in graph.consumers(name):
            for output in node.outputs:
                info = graph.tensors.get(output)
                if info is not None and info.static and output not in changed:
                    context.set_value(output, static_value(graph, output))


def _regenerate(context: RewriteContext, regenerated: tuple[tuple[str, int], ...]) -> None:
    """Static tensors computed from activation shapes: their producers set the new lengths."""
    for tensor, axis in regenerated:
        producer = context.graph.producer(tensor)
        rule = rule_for(producer.op_type, producer.domain) if producer is not None else None
        if producer is None or rule is None:
            raise InternalError(f"'{tensor}' is regenerated but has no producer with a rule")
        rule.regenerate(producer, context.graph, context, axis)


def _slice_static_tensors(
    context: RewriteContext, recomputed: frozenset[str], stored: frozenset[str]
) -> None:
    """Slice every static tensor that loses channels; store the ``stored`` ones, pruned or not."""
    graph = context.graph
    axes_by_tensor: dict[str, list[int]] = {tensor: [] for tensor in sorted(stored)}
    for tensor, axis in context.kept:
        info = graph.tensors.get(tensor)
        if info is not None and info.static and tensor not in recomputed:
            axes_by_tensor.setdefault(tensor, []).append(axis)
    for tensor, axes in axes_by_tensor.items():
        value = context.value(tensor)
        for axis in sorted(axes):
            value = np.take(value, context.kept[(tensor, axis)], axis=axis)
        context.set_value(tensor, value)


def _apply(graph: GraphAnalysis, context: RewriteContext) -> onnx.ModelProto:
    original = graph.model.proto
    # onnx-graphsurgeon's importer writes into the proto it reads (it sets the names of
    # Constant nodes' tensors), so it reads a copy: the analysed model stays untouched.
    source = onnx.ModelProto()
    source.CopyFrom(original)
    surgeon = gs.import_onnx(source)
    tensors = surgeon.tensors()
    constants = []
    for name, value in context.values.items():
        tensor = tensors[name]
        if isinstance(tensor, gs.Constant):
            tensor.values = value
            continue
        for producer in list(tensor.inputs):
            producer.outputs = [out for out in producer.outputs if out is not tensor]
        if _reaches_initializer(graph, name):
            # An alias of a stored tensor (a parameter the exporter shared): stored too.
            tensor.to_constant(value)
        else:
            # Computed from constants (a non-affine norm's scale of ones): stays a constant,
            # so it is neither a parameter nor re-initialised.
            constants.append(
                gs.Node(
                    "Constant",
                    f"{name}__ranp_constant",
                    {"value": gs.Constant(f"{name}__ranp_value", value)},
                    outputs=[tensor],
                )
            )
    for gs_node, node in zip(surgeon.nodes, graph.nodes):
        for key, value in context.attributes.get(node.name, {}).items():
            if value is None:
                gs_node.attrs.pop(key, None)
            else:
                gs_node.attrs[key] = value
        for position in range(len(gs_node.inputs) + 4):
            replacement = context.inputs.get((node.name, position))
            if replacement is None:
                continue
            while len(gs_node.inputs) <= position:
                gs_node.inputs.append(gs.Variable.empty())
            gs_node.inputs[position] = gs.Constant(replacement[0], replacement[1])
        if any((node.name, position) in context.removed for position in range(len(node.inputs))):
            gs_node.inputs = [
                tensor
                for position, tensor in enumerate(gs_node.inputs)
                if (node.name, position) not in context.removed
            ]
    surgeon.nodes.extend(constants)
    surgeon.toposort()
    keep_shapes = set(graph.input_names) | set(graph.output_names)
    for name, tensor in surgeon.tensors().items():
        if isinstance(tensor, gs.Variable) and name not in keep_shapes:
            tensor.shape = None
    surgeon.cleanup(remove_unused_graph_inputs=False)
    model = gs.export_onnx(surgeon, do_type_check=False)
    _copy_model_fields(original, model)
    del model.graph.value_info[:]
    model.graph.value_info.extend(_uninferable_outputs(graph, context, model))
    if model.ByteSize() < (1 << 31) - 1:
        try:
            model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except onnx.shape_inference.InferenceError as error:
            raise ValidationError(
                "validation failed: the rewritten model fails ONNX shape inference "
                f"({last_line(error)}); this is a bug in ranp-onnx, no model was written"
            ) from error
    return model


def _uninferable_outputs(
    graph: GraphAnalysis, context: RewriteContext, model: onnx.ModelProto
) -> list[onnx.ValueInfoProto]:
    """Pruned types of the outputs ONNX's shape inference cannot infer (GroupNormalization).

    Without them the strict inference of the rewritten model stops there. Each takes the
    original model's declaration (symbolic batch included) where it has one, else unknown
    dimensions, with the pruned axes' new lengths.
    """
    declared = {value.name: value for value in graph.model.proto.graph.value_info}
    produced = {name for node in model.graph.node for name in node.output}
    found = []
    for node in graph.nodes:
        rule = rule_for(node.op_type, node.domain)
        shapes = [graph.tensors[name].shape if name else None for name in node.inputs]
        if rule is None or rule.output_shapes(node, shapes) is None:
            continue
        for name in node.outputs:
            info = graph.tensors.get(name)
            if name not in produced or info is None or info.shape is None:
                continue
            value = onnx.helper.make_tensor_value_info(
                name, info.elem_type, [None] * len(info.shape)
            )
            if name in declared:
                value.CopyFrom(declared[name])
            dims = value.type.tensor_type.shape.dim
            for axis in range(len(dims)):
                if context.kept_channels(name, axis) is not None:
                    dims[axis].Clear()
                    dims[axis].dim_value = context.new_size(name, axis)
            found.append(value)
    return found


def _reaches_initializer(graph: GraphAnalysis, name: str) -> bool:
    """True if static tensor ``name`` is computed from an initializer (not only constants)."""
    return any(graph.is_initializer(tensor) for tensor in graph.ancestors(name))


def _copy_model_fields(original: onnx.ModelProto, model: onnx.ModelProto) -> None:
    model.ir_version = runtime.runtime_ir_version(original)
    del model.opset_import[:]
    model.opset_import.extend(original.opset_import)
    model.producer_name = original.producer_name
    model.producer_version = original.producer_version
    model.domain = original.domain
    model.model_version = original.model_version
    model.doc_string = original.doc_string
    del model.metadata_props[:]
    model.metadata_props.extend(original.metadata_props)
    model.graph.name = original.graph.name
