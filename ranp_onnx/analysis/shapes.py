"""Stage 2, analyse: every tensor's shape at concrete input shapes.

``analyse`` runs ONNX shape inference node by node in topological order, folding the small
constant sub-graphs that exporters leave behind (``Shape -> Gather -> Concat`` chains,
``Resize`` scales built by ``Concat``) so that every tensor on the data path gets a concrete
shape. It never runs the model: a 3D-UNet at 128^3 is analysed from shapes alone.

A dynamic batch (the first axis of an input) is filled in with ``batch_size`` (1 unless
told: per-sample counts, as the paper's tables count); any other dynamic dimension needs
``input_shapes``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import onnx

from ..errors import InputShapeError, UnsupportedModelError
from ..ir.graph import GraphAnalysis
from ..ir.load import LoadedModel, load_model
from ..ops import rule_for
from .batch import batch_fixer
from .shape_inference import infer_shapes

_DIM_SEPARATOR = re.compile(r"[x,]")


def parse_input_shapes(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME=1x1x64x64x64`` strings (``NAME=`` may be left out for a single input).

    Returns:
        Shapes keyed by input name; the key "" stands for "the only input".

    Raises:
        InputShapeError: A spec is malformed.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, _, dims_text = spec.rpartition("=")
        try:
            dims = tuple(int(part) for part in _DIM_SEPARATOR.split(dims_text.strip()))
        except ValueError:
            dims = ()
        if not dims or any(d <= 0 for d in dims):
            raise InputShapeError(
                f"`input_shapes` '{spec}': expected NAME=1x1x64x64x64 (positive integers)"
            )
        shapes[name.strip()] = dims
    return shapes


def analyse(
    model: str | onnx.ModelProto | LoadedModel,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    batch_size: int = 1,
) -> GraphAnalysis:
    """Infer every tensor's shape at concrete input shapes.

    Args:
        model: A path, ModelProto or loaded model.
        input_shapes: Shapes for graph inputs, keyed by name ("" for the only input).
            Needed for dynamic dimensions other than the batch; fixed dimensions must match.
        batch_size: The batch of an input whose first axis is dynamic and that
            ``input_shapes`` does not give. Defaults to 1 (per-sample counts).

    Returns:
        The analysis.

    Raises:
        InputShapeError: A shape names no input, does not fit the graph, or a needed
            dimension stays unknown; a node that fixes a dynamic batch is named.
        UnsupportedModelError: A node has no ONNX schema or shape inference fails.
    """
    if batch_size < 1:
        raise InputShapeError(f"`batch_size` must be at least 1, got {batch_size}")
    loaded = load_model(model)
    graph = loaded.proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    input_names = tuple(i.name for i in graph.input if i.name not in initializers)
    concrete = _resolve_input_shapes(graph, input_names, input_shapes or {}, batch_size)
    try:
        inferred = infer_shapes(loaded, concrete)
    except InputShapeError as error:
        named = _batch_fixed_by_a_node(loaded, concrete)
        if named is None:
            raise
        raise named from error
    analysis = inferred.analysis()
    _check_shapes_fit(analysis)
    return analysis


def require_convolution(graph: GraphAnalysis) -> None:
    """Refuse a model without a convolution on its data path.

    ranp-onnx is for convolutional networks: the commands call this (the library's
    ``count_costs`` still counts any graph).

    Raises:
        UnsupportedModelError: No Conv or ConvTranspose node reads the model's inputs.
    """
    for node in graph.nodes:
        rule = rule_for(node.op_type, node.domain)
        if (
            rule is not None
            and rule.is_convolution
            and not all(
                graph.tensors[name].static for name in node.outputs if name in graph.tensors
            )
        ):
            return
    raise UnsupportedModelError(
        f"{graph.model.name}: the graph has no convolution (Conv or ConvTranspose) on its "
        "data path; ranp-onnx prunes the neurons of convolutional networks"
    )


def has_open_input_dimensions(graph: GraphAnalysis) -> bool:
    """Return True if some graph input leaves a dimension open (a dynamic batch, say).

    A static tensor computed from such an input's shape changes with it, so a pruned model
    must keep computing it rather than store the value seen at the analysed shapes.
    """
    declared = {value.name: value for value in graph.model.proto.graph.input}
    return any(
        not _is_fixed(dim)
        for name in graph.input_names
        for dim in declared[name].type.tensor_type.shape.dim
    )


def _check_shapes_fit(graph: GraphAnalysis) -> None:
    """Ask each rule to check what ONNX shape inference leaves unchecked; refuse empty tensors."""
    for node in graph.nodes:
        outputs = [graph.tensors[name] for name in node.outputs if name in graph.tensors]
        if all(info.static for info in outputs):
            continue
        rule = rule_for(node.op_type, node.domain)
        if rule is not None:
            rule.check_shapes(node, graph)
        for info in outputs:
            if info.shape is not None and 0 in info.shape:
                raise InputShapeError(
                    f"node '{node.name}' ({node.op_type}) gives an empty tensor '{info.name}' "
                    f"of shape {'x'.join(map(str, info.shape))} at input shapes "
                    f"{_shapes_text(graph.input_shapes)}: the input is too small for the graph"
                )


def _resolve_input_shapes(
    graph: onnx.GraphProto,
    input_names: tuple[str, ...],
    requested: Mapping[str, Sequence[int]],
    batch_size: int,
) -> dict[str, tuple[int, ...]]:
    """Each input's shape: as given, else as declared with a dynamic batch filled in."""
    requested = dict(requested)
    if "" in requested:
        if len(input_names) != 1:
            raise InputShapeError(
                "`input_shapes` without NAME= needs a model with one input; this one has "
                f"{len(input_names)}: {', '.join(input_names)}"
            )
        requested[input_names[0]] = requested.pop("")
    unknown = sorted(set(requested) - set(input_names))
    if unknown:
        raise InputShapeError(
            f"`input_shapes` names '{unknown[0]}', which is not an input of the model "
            f"(inputs: {', '.join(input_names)})"
        )
    declared = {value.name: value for value in graph.input}
    shapes: dict[str, tuple[int, ...]] = {}
    for name in input_names:
        dims = declared[name].type.tensor_type.shape.dim
        given = requested.get(name)
        if given is not None:
            shapes[name] = _fit_input_shape(name, dims, tuple(int(d) for d in given))
            continue
        dynamic = [
            f"{axis} ('{dim.dim_param}')" if dim.dim_param else str(axis)
            for axis, dim in enumerate(dims)
            if axis > 0 and not _is_fixed(dim)
        ]
        if dynamic:
            plural = "s" if len(dynamic) > 1 else ""
            hint = "x".join(
                _dim_hint(d, batch_size if axis == 0 else None) for axis, d in enumerate(dims)
            )
            raise InputShapeError(
                f"input '{name}' has dynamic dimension{plural} {', '.join(dynamic)}: pass "
                f"`input_shapes` {name}={hint}"
            )
        shapes[name] = tuple(int(dim.dim_value) if _is_fixed(dim) else batch_size for dim in dims)
    return shapes


def dynamic_batch_inputs(model: LoadedModel) -> tuple[str, ...]:
    """The model's inputs whose first axis (the batch) is dynamic."""
    graph = model.proto.graph
    initializers = {tensor.name for tensor in graph.initializer}
    return tuple(
        value.name
        for value in graph.input
        if value.name not in initializers
        and value.type.tensor_type.shape.dim
        and not _is_fixed(value.type.tensor_type.shape.dim[0])
    )


def _batch_fixed_by_a_node(
    model: LoadedModel, shapes: Mapping[str, tuple[int, ...]]
) -> InputShapeError | None:
    """The error naming the node that fixes a dynamic batch the inference failed at.

    None if no input's batch is dynamic and above 1, if the graph fails at batch 1 too, or
    if every node follows the batch (the failure is something else).
    """
    dynamic = [name for name in dynamic_batch_inputs(model) if shapes[name][0] != 1]
    if not dynamic:
        return None
    at_one = {name: (1, *shape[1:]) if name in dynamic else shape for name, shape in shapes.items()}
    inferred = infer_shapes(model, at_one, stop_at_failure=True)
    if inferred.failure is not None:
        return None
    fixer = batch_fixer(inferred.analysis(), shapes[dynamic[0]][0])
    if fixer is None:
        return None
    return InputShapeError(
        f"input '{dynamic[0]}' has a dynamic batch, but {fixer.describe()}: give `input_shapes` "
        f"{dynamic[0]}={'x'.join(map(str, at_one[dynamic[0]]))} (larger batches then score in "
        "batches of 1), or export the model without the fixed batch"
    )


def _is_fixed(dim: onnx.TensorShapeProto.Dimension) -> bool:
    return dim.HasField("dim_value") and dim.dim_value > 0


def _shapes_text(shapes: Mapping[str, Sequence[int]]) -> str:
    return ", ".join(f"{name}={'x'.join(map(str, shape))}" for name, shape in shapes.items())


def _fit_input_shape(
    name: str, dims: Sequence[onnx.TensorShapeProto.Dimension], given: tuple[int, ...]
) -> tuple[int, ...]:
    if len(dims) != len(given):
        raise InputShapeError(
            f"`input_shapes` {name}: the model's input has {len(dims)} dimensions, "
            f"got {len(given)} ({'x'.join(map(str, given))})"
        )
    for axis, (dim, value) in enumerate(zip(dims, given)):
        if _is_fixed(dim) and dim.dim_value != value:
            raise InputShapeError(
                f"`input_shapes` {name}: dimension {axis} is fixed at {dim.dim_value} in the "
                f"model, got {value}"
            )
    return given


def _dim_hint(dim: onnx.TensorShapeProto.Dimension, batch: int | None) -> str:
    if _is_fixed(dim):
        return str(dim.dim_value)
    if batch is not None:
        return str(batch)
    return f"<{dim.dim_param or '?'}>"
