"""The pruning criteria (``--method``): from gradient statistics to a keep decision.

Each criterion is a small class registered by name. Most give a score per neuron, which
:func:`unit_scores` combines over coupled channels (``--group-reduction``) and the global
top-k of :mod:`ranp_onnx.selection.constraints` ranks; the per-layer allocations (layerwise,
spr, dpr) give a keep fraction per group instead, and SNIP-NP its own parameter-level
selection.

=========  ====================================================  ==================
method     neuron score                                          allocation
=========  ====================================================  ==================
vanilla    MPMG/MNMG sum/mean/max (``--importance``)             global top-k
weighted   vanilla, layer means balanced                         global top-k
ranp-f     weighted x (1 + lambda softmax(-FLOPs / max FLOPs))   global top-k
ranp-m     weighted x (1 + lambda softmax(-mem / max mem))       global top-k
random     uniform random (``--seed``)                           global top-k
layerwise  vanilla                                               same ratio per layer
snip       SNIP parameter top-k at ``sparsity``, then neurons    neurons with a
           with a surviving incoming weight                      surviving weight
l1         filter L1 norm (Li et al.)                            global top-k
taylor     first-order Taylor, l2-normalised per layer           global top-k
spr        filter L1 norm                                        same ratio per layer
dpr        filter L1 norm                                        DPR (PCA + FLOPs)
=========  ====================================================  ==================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..analysis.channels import ChannelAnalysis
from ..analysis.costs import count_costs
from ..errors import PlanError
from ..ir.graph import GraphAnalysis
from ..scoring.statistics import Scoring
from . import importance
from .constraints import global_keep, per_group_keep
from .options import DEFAULT_LAMBDA, SelectionOptions

#: RANP's lambda per dataset preset (shared reference, section 1.8).
LAMBDA_BY_PRESET = {"shapenet": 11.0, "brats": 15.0, "ucf101": 80.0}
#: Metadata key ``ranp-onnx export`` writes: the dataset preset (sets RANP's lambda).
PRESET_KEY = "ranp_onnx.preset"


def default_lambda(graph: GraphAnalysis) -> float:
    """RANP's lambda for the model's preset as ``ranp-onnx export`` records it, else 11.

    11 for ShapeNet, 15 for BraTS'18, 80 for UCF101 (the paper's values).
    """
    for entry in graph.model.proto.metadata_props:
        if entry.key == PRESET_KEY:
            return LAMBDA_BY_PRESET.get(entry.value, DEFAULT_LAMBDA)
    return DEFAULT_LAMBDA


class Criterion:
    """Base: a global top-k over neuron scores."""

    name: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = True
    #: What the sparsity is a fraction of.
    sparsity_of: ClassVar[str] = "neurons"

    def layer_scores(self, scoring: Scoring, options: SelectionOptions) -> list[np.ndarray]:
        """Score per neuron of every layer."""
        raise NotImplementedError

    def select(
        self,
        scoring: Scoring,
        options: SelectionOptions,
        sparsity: float,
    ) -> tuple[np.ndarray, np.ndarray, float | None]:
        """Return raw keep flags, unit scores and the threshold (None if there is none)."""
        scores = unit_scores(scoring, self.layer_scores(scoring, options), options)
        keep, threshold = global_keep(
            scoring.channels, scores, sparsity, scoring.excluded, seed=options.seed
        )
        return keep, scores, threshold


_CRITERIA: dict[str, Criterion] = {}


def register(criterion_class: type[Criterion]) -> type[Criterion]:
    """Class decorator: register a criterion under its name; refuses duplicates."""
    if criterion_class.name in _CRITERIA:
        raise ValueError(f"two criteria named {criterion_class.name!r}")
    _CRITERIA[criterion_class.name] = criterion_class()
    return criterion_class


def criterion(name: str) -> Criterion:
    """Return the criterion called ``name``.

    Raises:
        PlanError: No criterion has that name.
    """
    found = _CRITERIA.get(name)
    if found is None:
        raise PlanError(f"unknown method '{name}' (choose from {', '.join(_CRITERIA)})")
    return found


def method_names() -> tuple[str, ...]:
    """All criterion names, in registration order."""
    return tuple(_CRITERIA)


def unit_scores(
    scoring: Scoring, layer_scores: Sequence[np.ndarray], options: SelectionOptions
) -> np.ndarray:
    """Combine neuron scores into one score per unit (``options.group_reduction``)."""
    channels = scoring.channels
    total = np.zeros(channels.unit_count)
    count = np.zeros(channels.unit_count)
    best = np.full(channels.unit_count, -np.inf)
    for layer, scores, skip in zip(channels.layers, layer_scores, scoring.ignored):
        if skip:
            continue
        np.add.at(total, layer.units, scores)
        np.add.at(count, layer.units, 1)
        np.maximum.at(best, layer.units, scores)
    if options.group_reduction == "sum":
        combined = total
    elif options.group_reduction == "max":
        combined = np.where(count > 0, best, 0.0)
    else:
        combined = total / np.maximum(count, 1)
    return combined


def _scored(
    scores: list[np.ndarray], ignored: Sequence[bool], transform: object
) -> list[np.ndarray]:
    """Apply a cross-layer transform to the layers that are not ignored."""
    kept = [s for s, skip in zip(scores, ignored) if not skip]
    transformed = iter(transform(kept))  # type: ignore[operator]
    return [s if skip else next(transformed) for s, skip in zip(scores, ignored)]


def layer_resources(channels: ChannelAnalysis, kind: str) -> list[float]:
    """RANP's per-layer resource on the full model at batch 1.

    "flops": the reference counter's layer FLOPs (``out_numel (C_in/groups prod(k) +
    bias)``); "memory": the element count of the layer's own output.
    """
    graph = channels.graph
    batch = max(graph.shape(graph.input_names[0])[0], 1) if graph.input_names else 1
    if kind == "memory":
        return [graph.tensors[layer.output].numel / batch for layer in channels.layers]
    by_node = {layer.name: layer for layer in count_costs(graph, "ranp-paper").layers}
    return [by_node[layer.node].flops / batch for layer in channels.layers]


@register
class Vanilla(Criterion):
    """Vanilla NP: ``|reduce(G)|`` per neuron (MPMG-sum by default)."""

    name = "vanilla"

    def layer_scores(self, scoring: Scoring, options: SelectionOptions) -> list[np.ndarray]:
        """Reduce each neuron's accumulated mask gradients."""
        signed, reduction = importance.split_importance(options.importance)
        source = scoring.stats.signed if signed else scoring.stats.magnitude
        return [importance.neuron_importance(g, reduction) for g in source]


@register
class Weighted(Vanilla):
    """Weighted NP: vanilla scores with every layer's mean raised to the largest."""

    name = "weighted"

    def layer_scores(self, scoring: Scoring, options: SelectionOptions) -> list[np.ndarray]:
        """Balance the layer means."""
        scores = super().layer_scores(scoring, options)
        return _scored(scores, scoring.ignored, importance.layer_mean_balance)


class _Ranp(Weighted):
    resource: ClassVar[str] = ""

    def layer_scores(self, scoring: Scoring, options: SelectionOptions) -> list[np.ndarray]:
        """Balance, then reweight by the layer's resource."""
        balanced = super().layer_scores(scoring, options)
        resources = layer_resources(scoring.channels, self.resource)
        kept_resources = [r for r, skip in zip(resources, scoring.ignored) if not skip]
        return _scored(
            balanced,
            scoring.ignored,
            lambda kept: importance.resource_reweight(kept, kept_resources, options.lam),
        )


@register
class RanpFlops(_Ranp):
    """RANP-f: reweighted by the layers' FLOPs."""

    name = "ranp-f"
    resource = "flops"


@register
class RanpMemory(_Ranp):
    """RANP-m: reweighted by the layers' output memory."""

    name = "ranp-m"
    resource = "memory"


@register
class Random(Criterion):
    """Random NP: keep floor(N (1 - s)) neurons at random (seeded)."""

    name = "random"
    needs_gradients = False

    def layer_scores(self, scoring: Scoring, options: SelectionOptions) -> list[np.ndarray]:
        """Uniform random scores."""
        generator = np.random.default_rng(options.seed)
        return [generator.random(layer.channels) for layer in scoring.channels.layers]


class _PerGroup(Criterion):
    """Keep the same fraction of every group, ranked by ``layer_scores``."""

    def fractions(
        self,
        scoring: Scoring,
        options: SelectionOptions,
        sparsity: float,
    ) -> np.ndarray:
        """Keep fraction per group."""
        return np.full(len(scoring.channels.groups), 1.0 - sparsity)

    def select(
        self,
        scoring: Scoring,
        options: SelectionOptions,
        sparsity: float,
    ) -> tuple[np.ndarray, np.ndarray, float | None]:
        """Per-group counts, best units first."""
        scores = unit_scores(scoring, self.layer_scores(scoring, options), options)
        fractions = self.fractions(scoring, options, sparsity)
        for group in scoring.channels.groups:
            if scoring.excluded[group.units].all():
                fractions[group.id] = 1.0
        return per_group_keep(scoring.channels, scores, fractions), scores, None


@register
class LayerWise(_PerGroup, Vanilla):
    """Layer-wise NP: ceil(n_l (1 - s)) neurons of every layer, by vanilla importance."""

    name = "layerwise"


@register
class FilterL1(Criterion):
    """Li et al.: the L1 norm of each neuron's incoming weights, ranked globally."""

    name = "l1"
    needs_gradients = False

    def layer_scores(self, scoring: Scoring, options: SelectionOptions) -> list[np.ndarray]:
        """Filter norms."""
        return [importance.filter_l1(w) for w in scoring.stats.weights]


@register
class SameRatio(_PerGroup, FilterL1):
    """Zhang et al.'s SPR: the same pruning ratio in every layer, filters by L1 norm."""

    name = "spr"


@register
class DifferentRatio(_PerGroup, FilterL1):
    """Zhang et al.'s DPR: per-layer ratios from PCA redundancy and FLOPs share.

    ``sparsity`` is their overall pruning ratio ``pr`` of Eq. 4 (FLOPs-weighted).
    """

    name = "dpr"

    def fractions(
        self,
        scoring: Scoring,
        options: SelectionOptions,
        sparsity: float,
    ) -> np.ndarray:
        """One minus DPR's ratio of the group's first layer (FLOPs summed over its layers)."""
        channels = scoring.channels
        flops = layer_resources(channels, "flops")
        by_node = {layer.node: i for i, layer in enumerate(channels.layers)}
        firsts = [by_node[group.layers[0]] for group in channels.groups]
        group_flops = [
            sum(flops[by_node[name]] for name in group.layers) for group in channels.groups
        ]
        ratios = importance.dpr_prune_ratios(
            [scoring.stats.weights[i] for i in firsts], group_flops, sparsity, max_ratio=1.0
        )
        return 1.0 - ratios


@register
class Taylor(Criterion):
    """Molchanov et al.: |mean(a dL/da)| per channel, l2-normalised per layer."""

    name = "taylor"

    def layer_scores(self, scoring: Scoring, options: SelectionOptions) -> list[np.ndarray]:
        """Normalised Taylor terms."""
        return _scored(list(scoring.stats.taylor), scoring.ignored, importance.taylor_normalize)


@register
class SnipNeurons(Criterion):
    """SNIP-NP: the top (1 - s) of all weights by |g w|, then neurons with a survivor.

    A neuron survives if any of its incoming weights does; survivors are made dense.
    """

    name = "snip"
    sparsity_of = "weights"

    def layer_scores(self, scoring: Scoring, options: SelectionOptions) -> list[np.ndarray]:
        """A neuron's best incoming weight saliency (ranks rescued units)."""
        return [m.max(axis=1) for m in scoring.stats.magnitude]

    def select(
        self,
        scoring: Scoring,
        options: SelectionOptions,
        sparsity: float,
    ) -> tuple[np.ndarray, np.ndarray, float | None]:
        """Parameter-level top-k, then neurons with a surviving weight."""
        channels, magnitude, ignored = scoring.channels, scoring.stats.magnitude, scoring.ignored
        pool = np.concatenate([m.reshape(-1) for m, skip in zip(magnitude, ignored) if not skip])
        kept_count = int(np.floor(pool.size * (1.0 - sparsity)))
        threshold = (
            float(np.partition(pool, pool.size - kept_count)[pool.size - kept_count])
            if kept_count > 0
            else np.inf
        )
        keep = np.zeros(channels.unit_count, dtype=bool)
        for layer, saliency, skip in zip(channels.layers, magnitude, ignored):
            alive = np.ones(layer.channels, bool) if skip else (saliency >= threshold).any(axis=1)
            keep[layer.units[alive]] = True
        scores = unit_scores(scoring, self.layer_scores(scoring, options), options)
        return keep, scores, threshold
