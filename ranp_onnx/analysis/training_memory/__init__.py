"""The peak memory of one torch training step, played from the op rules (see :mod:`.model`).

:mod:`.model` is the entry point (setup, prediction, the training graph); :mod:`.passes`
plays the forward, loss, backward and optimizer step on the ledger of :mod:`.timeline`;
:mod:`.gradients` keeps the backward's bookkeeping and :mod:`.loss` the loss's and the
optimizer's tensors.
"""

from __future__ import annotations

from .model import (
    DEVICES,
    OPTIMIZERS,
    PRECISIONS,
    Optimizer,
    Precision,
    TrainingMemory,
    TrainingSetup,
    loss_input,
    predict_training_memory,
    training_graph,
)

__all__ = [
    "DEVICES",
    "OPTIMIZERS",
    "PRECISIONS",
    "Optimizer",
    "Precision",
    "TrainingMemory",
    "TrainingSetup",
    "loss_input",
    "predict_training_memory",
    "training_graph",
]
