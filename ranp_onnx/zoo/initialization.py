"""Parameter initialisation as the RANP reference does it, seeded.

Shared reference, section 1.1: Conv / ConvTranspose / Linear weights Glorot (Xavier) normal
with gain 1, their biases N(0, 1); BatchNorm gamma ~ N(1, 0.02) and beta = 0. Orthogonal
weights are the option the paper compares against (worse for 3D). Running statistics keep
torch's defaults (mean 0, variance 1).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Initialization = Literal["xavier", "orthogonal"]
INITIALIZATIONS: tuple[Initialization, ...] = ("xavier", "orthogonal")

_WEIGHTED = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear,
)  # fmt: skip
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Standard deviation of BatchNorm gamma around 1.
GAMMA_STD = 0.02


def initialize(module: nn.Module, *, seed: int = 0, scheme: Initialization = "xavier") -> nn.Module:
    """Re-initialise every layer of ``module`` in place, reproducibly.

    Args:
        module: The model.
        seed: Seed of a private generator (the global torch RNG is left alone).
        scheme: "xavier" (Glorot normal, gain 1; the paper's default) or "orthogonal".
            Defaults to "xavier".

    Returns:
        The same module.

    Raises:
        ValueError: Unknown ``scheme``.
    """
    if scheme not in INITIALIZATIONS:
        raise ValueError(f"unknown initialization {scheme!r}; choose from {INITIALIZATIONS}")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, _WEIGHTED):
                if scheme == "xavier":
                    nn.init.xavier_normal_(layer.weight, gain=1.0, generator=generator)
                else:
                    nn.init.orthogonal_(layer.weight, gain=1.0, generator=generator)
                if layer.bias is not None:
                    nn.init.normal_(layer.bias, 0.0, 1.0, generator=generator)
            elif isinstance(layer, _NORMS) and layer.affine:
                nn.init.normal_(layer.weight, 1.0, GAMMA_STD, generator=generator)
                nn.init.zeros_(layer.bias)
    return module
