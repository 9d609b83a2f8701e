"""Static tensors with channel spaces: sliced at their initializer, regenerated, or stored.

A rule may tie a static tensor to channels (a per-channel constant an Add reads, the
constant part of a Concat); the rewriter then gives it the kept channels. How depends on
where its value comes from:

- layout-only ops on an initializer (``Unsqueeze(prelu.weight)``): the initializer itself
  is sliced, so parameter names survive (:func:`trace_static_sources`);
- the shapes of activations (``torch.zeros(x.size(0), k, ...)``, a ConstantOfShape of a
  shape built at run time): its producer's rule regenerates it with the pruned channel
  count where it can (:func:`follow_computed_statics`). Where it cannot, its value at the
  analysed shapes is stored if every input dimension is fixed (the value can never
  change), and otherwise its channels and those of the activations whose shapes it reads
  are kept whole (a stored value would fit one batch size only, a computed one would
  follow the activations' pruned widths);
- anything else: the rewriter stores the sliced value.
"""

from __future__ import annotations

from ..ir.graph import GraphAnalysis
from ..ops import rule_for
from ..ops.channel_graph import ChannelGraph
from ..ops.coupling import shape_sources
from .shapes import has_open_input_dimensions


def trace_static_sources(channels: ChannelGraph) -> None:
    """Tie static channel spaces back through layout-only ops to their initializer.

    Only where the source feeds nothing else: an initializer shared with other nodes (the
    torchscript exporter's ``Identity`` aliases of equal initializers) is left alone and
    the rewriter stores a sliced copy for this consumer instead.
    """
    graph = channels.graph
    pending = [s for s in channels.spaces() if is_computed_static(graph, s.tensor)]
    while pending:
        space = pending.pop()
        producer = graph.producer(space.tensor)
        rule = rule_for(producer.op_type, producer.domain) if producer is not None else None
        source = rule.static_source(producer, graph, space.axis) if rule and producer else None
        if source is None or len(graph.consumers(source[0])) != 1:
            continue
        name, axis = source
        if graph.tensors[name].shape is None or graph.shape(name)[axis] != space.size:
            continue
        known = channels.has_space(name, axis)
        channels.tie(space, channels.space(name, axis))
        channels.recomputed.add(space.tensor)
        if not known and is_computed_static(graph, name):
            pending.append(channels.space(name, axis))


def follow_computed_statics(channels: ChannelGraph) -> None:
    """Regenerate, store or keep whole the static channel spaces computed from shapes.

    Runs after :func:`trace_static_sources`; tensors it already traced are left alone.
    Such a tensor is recomputed from the pruned activations' shapes, so it must be handled
    even where its own channels are all kept (``planes - x.size(1)`` changes with x).
    """
    graph = channels.graph
    axes: dict[str, list[int]] = {}
    for space in channels.spaces():
        if space.tensor not in channels.recomputed and is_computed_static(graph, space.tensor):
            axes.setdefault(space.tensor, []).append(space.axis)
    open_inputs: bool | None = None
    for name, tensor_axes in axes.items():
        sources = shape_sources(graph, name)
        if not sources:
            continue
        producer = graph.producer(name)
        rule = rule_for(producer.op_type, producer.domain) if producer is not None else None
        if (
            producer is not None
            and rule is not None
            and all(rule.follows_channels(producer, graph, axis) for axis in tensor_axes)
        ):
            channels.recomputed.add(name)
            channels.regenerated.extend((name, axis) for axis in tensor_axes)
            continue
        if open_inputs is None:
            open_inputs = has_open_input_dimensions(graph)
        if not open_inputs:
            channels.stored.add(name)
            continue
        what = f"op '{producer.op_type}'" if producer is not None else "it"
        reason = (
            f"'{name}' is computed from the shape of '{sources[0]}' and {what} cannot be "
            "given the pruned channel count"
        )
        for tensor in (name, *sources):
            channels.block(tensor, reason)


def is_computed_static(graph: GraphAnalysis, name: str) -> bool:
    """Return True if ``name`` is static but not an initializer (computed from constants)."""
    info = graph.tensors.get(name)
    return info is not None and info.static and not graph.is_initializer(name)
