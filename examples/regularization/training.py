"""Plain SGD training and top-1 evaluation of ONNX models, for the reproduction.

The same recipe for every network of the study: SGD with momentum 0.9 and weight decay
5e-4 (the regularization's ``lambda``), cross-entropy on the logits, batches drawn from a
fresh permutation of the training clips each epoch, the learning rate decayed by a cosine
to 0 (as ``regularize`` fine-tunes; its regularization phase keeps it constant).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

from examples.tasks import Samples
from examples.training import logits_name
from ranp_onnx.scoring.data import Batch
from ranp_onnx.scoring.evaluator import TorchGraph
from ranp_onnx.torch_api.round_trip import to_onnx

MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4


class EpochBatches:
    """Labelled batches of the training clips, reshuffled at every pass (seeded).

    Args:
        samples: The clips.
        batch: Clips per batch (the last incomplete batch of a pass is dropped).
        seed: Seeds the order; pass ``n`` uses ``(seed, n)``.
    """

    def __init__(self, samples: Samples, batch: int, seed: int) -> None:
        self.samples = samples
        self.batch = batch
        self.seed = seed
        self.passes = 0

    def __len__(self) -> int:
        """Batches per pass."""
        return len(self.samples) // self.batch

    def __iter__(self) -> Iterator[Batch]:
        """One pass in a new order."""
        order = np.random.default_rng([self.seed, self.passes]).permutation(len(self.samples))
        self.passes += 1
        for first in range(0, len(self) * self.batch, self.batch):
            rows = np.sort(order[first : first + self.batch])
            yield Batch({"input": self.samples.inputs[rows]}, self.samples.labels[rows])


@dataclass(frozen=True)
class Fitted:
    """A trained model and its training losses, one per step."""

    model: onnx.ModelProto
    losses: list[float]


def fit(
    model: onnx.ModelProto,
    train: Samples,
    *,
    steps: int,
    batch: int,
    lr: float,
    cosine: bool,
    seed: int,
) -> Fitted:
    """Train ``model`` for ``steps`` SGD steps from its current weights."""
    torch.manual_seed(seed)
    module = TorchGraph(model).train()
    logits = logits_name(model, (1, *train.inputs.shape[1:]))
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    decay = (lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))) if cosine else None
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, decay or (lambda step: 1.0))
    losses: list[float] = []
    batches = EpochBatches(train, batch, seed)
    while len(losses) < steps:
        for item in batches:
            inputs = torch.from_numpy(item.inputs["input"])
            labels = torch.from_numpy(np.asarray(item.labels))
            loss = F.cross_entropy(module.capture({"input": inputs}, [logits])[logits], labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if len(losses) == steps:
                break
    return Fitted(to_onnx(module), losses)


def top1(model: onnx.ModelProto, test: Samples, batch: int = 32) -> float:
    """Top-1 accuracy in percent, in onnxruntime (inference mode: running statistics)."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    hits = 0
    for first in range(0, len(test), batch):
        (scores,) = session.run(None, {name: test.inputs[first : first + batch]})
        hits += int((np.asarray(scores).argmax(axis=1) == test.labels[first : first + batch]).sum())
    return 100.0 * hits / len(test)
