"""Regularization-based pruning of trained 3D CNNs (Zhang et al., ICIP 2019).

Pruning a *trained* network by training it on: every weight group gets its own L2
coefficient, grown for the groups that rank lowest by L1 norm (averaged over the
iterations) and shrunk for the others, until the lowest ``R N_g`` groups of every layer
are gone; then the model is rewritten without them and, optionally, fine-tuned.

One module per concept:

- :mod:`.groups`: the weight groups (channel units, or the paper's im2col columns);
- :mod:`.allocation`: how many groups each layer loses (SPR or DPR, to a FLOPs target);
- :mod:`.schedule`: averaged ranks, Eq. 3, and when a group is gone (numpy);
- :mod:`.regularizer`: :class:`Regularizer`, the object a training loop drives (torch);
- :mod:`.stream`, :mod:`.loop`: the training loop of ``ranp-onnx regularize``;
- :mod:`.finish`: the rewrite without the removed groups, its proof and its costs;
- :mod:`.checkpoint`, :mod:`.record`: continuing after Ctrl-C, and what a run remembers;
- :mod:`.pipeline`: :func:`regularize` (ONNX) and :func:`regularize_module` (torch);
- :mod:`.plots`: the figures of ``--plot``.

``import ranp_onnx.regularization`` does not import torch; the torch side is
:func:`ranp_onnx.regularize`, :func:`ranp_onnx.regularize_module` and
:class:`ranp_onnx.Regularizer`, imported on first access.
"""

from __future__ import annotations

from .options import RegularizeOptions

__all__ = ["RegularizeOptions"]
