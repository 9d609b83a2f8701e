"""Neuron importance: the RANP steps and the baselines' criteria, as plain numpy.

Each function works on one list entry per scored layer, in layer order, and follows the
reference computation (shared reference, section 1) exactly:

1. :func:`neuron_importance`: the accumulated mask gradient ``G`` of a layer, reshaped to
   ``[neurons, fan-in]``, reduced per neuron by sum, mean or max, then ``abs``.
2. :func:`layer_mean_balance` (weighted NP): ``s * max_k mean(s_k) / mean(s_l)``.
3. :func:`resource_reweight` (RANP-f / RANP-m): ``s * (1 + lambda * softmax(-tau)_l)`` with
   ``tau_l = r_l / max_k r_k``.

The other criteria: :func:`filter_l1` (Li et al.), :func:`taylor_normalize` (Molchanov et
al.'s first-order Taylor with per-layer l2 normalisation) and :func:`dpr_prune_ratios`
(Zhang et al.'s PCA-redundancy plus FLOPs-share allocation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Importance variants: (magnitude of parameter mask gradients?, reduction).
IMPORTANCES = ("mpmg-sum", "mpmg-mean", "mpmg-max", "mnmg-sum", "mnmg-mean", "mnmg-max")


def neuron_importance(gradient: np.ndarray, reduction: str) -> np.ndarray:
    """Reduce a ``[neurons, fan-in]`` accumulated mask gradient to one score per neuron.

    Args:
        gradient: ``G``: the running mean over batches of ``|g * w|`` (MPMG) or ``g * w``
            (MNMG), one row per neuron.
        reduction: "sum", "mean" (sum / fan-in) or "max".

    Returns:
        ``|reduce(G)|`` per neuron (float64).
    """
    rows = np.asarray(gradient, dtype=np.float64).reshape(gradient.shape[0], -1)
    if reduction == "sum":
        reduced = rows.sum(axis=1)
    elif reduction == "mean":
        reduced = rows.sum(axis=1) / rows.shape[1]
    elif reduction == "max":
        reduced = rows.max(axis=1)
    else:
        raise ValueError(f"unknown reduction {reduction!r}")
    return np.abs(reduced)


def split_importance(name: str) -> tuple[bool, str]:
    """Split "mpmg-sum" into (signed=False, "sum"); "mnmg-*" aggregates signed values."""
    if name not in IMPORTANCES:
        raise ValueError(f"unknown importance {name!r}; choose from {', '.join(IMPORTANCES)}")
    kind, reduction = name.split("-")
    return kind == "mnmg", reduction


def layer_mean_balance(scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Weighted NP: scale each layer so that every layer has the largest layer mean.

    A layer whose scores are all zero keeps zeros (it has nothing to balance).
    """
    means = np.array([float(np.mean(s)) if s.size else 0.0 for s in scores])
    target = means.max(initial=0.0)
    return [s * (target / mean) if mean > 0 else s.copy() for s, mean in zip(scores, means)]


def resource_multipliers(resources: Sequence[float], lam: float) -> np.ndarray:
    """Return ``1 + lambda * softmax(-tau)`` per layer, ``tau = r / max r``."""
    r = np.asarray(resources, dtype=np.float64)
    tau = r / r.max() if r.size and r.max() > 0 else np.zeros_like(r)
    exponent = np.exp(-tau - np.max(-tau, initial=0.0))
    return 1.0 + lam * exponent / exponent.sum()


def resource_reweight(
    scores: Sequence[np.ndarray], resources: Sequence[float], lam: float
) -> list[np.ndarray]:
    """RANP: multiply each layer's (balanced) scores by its resource multiplier."""
    multipliers = resource_multipliers(resources, lam)
    return [s * m for s, m in zip(scores, multipliers)]


def filter_l1(weight: np.ndarray) -> np.ndarray:
    """Li et al.: the L1 norm of each neuron's incoming weights (``[neurons, fan-in]``)."""
    rows = np.asarray(weight, dtype=np.float64).reshape(weight.shape[0], -1)
    return np.abs(rows).sum(axis=1)


def taylor_normalize(scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Molchanov et al.: divide each layer's Taylor scores by their l2 norm."""
    out = []
    for s in scores:
        norm = float(np.linalg.norm(s))
        out.append(s / norm if norm > 0 else s.copy())
    return out


def reconstruction_error(weight: np.ndarray, kept_fraction: float) -> float:
    """PCA reconstruction error of a layer's ``[neurons, fan-in]`` weight matrix.

    The rows are projected on the top ``kept_fraction`` of their principal components;
    the error is ``||V - V_r||^2 / ||V||^2`` (Zhang et al., section 2.2.1).
    """
    return float(reconstruction_errors(weight, [kept_fraction])[0])


def reconstruction_errors(
    weight: np.ndarray, kept_fractions: Sequence[float] | np.ndarray
) -> np.ndarray:
    """:func:`reconstruction_error` at several kept fractions, from one decomposition.

    The centred rows minus their projection on the top ``r`` principal components leave
    exactly the energy of the other singular values, so the error is
    ``sum_{i >= r} sigma_i^2 / ||V||^2`` and only the singular values are needed.
    """
    rows = np.asarray(weight, dtype=np.float64).reshape(weight.shape[0], -1)
    total = float(np.sum(rows**2))
    if total == 0:
        return np.zeros(len(kept_fractions))
    centred = rows - rows.mean(axis=0, keepdims=True)
    energy = np.linalg.svd(centred, compute_uv=False) ** 2
    keeps = [round(fraction * energy.size) for fraction in kept_fractions]
    return np.array([float(energy[keep:].sum()) / total for keep in keeps])


def dpr_prune_ratios(
    weights: Sequence[np.ndarray],
    flops: Sequence[float],
    prune_ratio: float,
    *,
    flops_weight: float = 0.8,
    max_ratio: float = 1.0,
) -> np.ndarray:
    """Zhang et al.'s DPR: per-layer pruning ratios from redundancy and FLOPs share.

    ``alpha_l`` is inversely proportional to the layer's PCA reconstruction error (mean
    over kept fractions 0.05 ... 0.95; a redundant layer reconstructs well and is pruned
    more), ``beta_l = G_l / sum G``; ``gamma = (1 - w) alpha + w beta`` (w = 0.8), both
    normalised to sum 1; ``v`` solves ``v sum(G gamma) = pr sum(G)`` (Eq. 4) and the
    ratios ``v gamma_l`` are clipped to ``[0, max_ratio]``.
    """
    fractions = np.arange(1, 20) / 20
    errors = np.array([np.mean(reconstruction_errors(w, fractions)) for w in weights])
    inverse = 1.0 / np.maximum(errors, 1e-12)
    alpha = inverse / inverse.sum()
    g = np.asarray(flops, dtype=np.float64)
    beta = g / g.sum()
    gamma = (1.0 - flops_weight) * alpha + flops_weight * beta
    v = prune_ratio * g.sum() / float(np.sum(g * gamma))
    return np.clip(v * gamma, 0.0, max_ratio)
