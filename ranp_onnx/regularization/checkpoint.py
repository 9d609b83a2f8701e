"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is a ``torch.save`` dictionary of tensors and plain data only, so it loads
with ``torch.load(weights_only=True)`` (no unpickling of arbitrary objects). It holds the
phase, the iterations done, the data position, the module's and optimizer's state, the
regularizer's schedule, the history, torch's random state, the model's fingerprint and
the options; in the fine-tuning phase also the pruned model. It is written atomically
(a temporary file renamed over the old one), so an interruption while writing leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
import torch

from ..errors import PlanError
from ..ir.save import atomic_path
from ..rewrite.oracle import ValidationResult

#: The ``format`` entry of a checkpoint (2: the oracle's result in its node-by-node form).
CHECKPOINT_FORMAT = "ranp-onnx-regularize-checkpoint/2"
#: Options that may differ between a run and its continuation.
RESUMABLE_CHANGES = frozenset({"checkpoint_every", "device"})


def fingerprint(model: onnx.ModelProto) -> str:
    """SHA-256 of the serialized model: a resumed run must start from the same one."""
    return hashlib.sha256(model.SerializeToString()).hexdigest()


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write a checkpoint atomically."""
    document = {"format": CHECKPOINT_FORMAT, **payload}
    with atomic_path(path) as temporary:
        torch.save(document, temporary)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint.

    Raises:
        PlanError: The file is missing or is not a checkpoint of ``ranp-onnx regularize``.
    """
    try:
        document = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise PlanError(f"`resume` {path}: no such file") from error
    except Exception as error:  # torch raises several types for a file it cannot read
        raise PlanError(f"`resume` {path}: not a checkpoint of ranp-onnx regularize") from error
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise PlanError(
            f"`resume` {path}: not a checkpoint of this version of ranp-onnx regularize"
        )
    return document


def check_resumable(
    document: Mapping[str, Any], model: onnx.ModelProto, settings: Mapping[str, Any], path: str
) -> None:
    """Refuse a checkpoint made from another model or with other options.

    Raises:
        PlanError: Names the option that differs.
    """
    if document["model_sha256"] != fingerprint(model):
        raise PlanError(f"`resume` {path}: the checkpoint was made from another model")
    saved = json.loads(document["settings"])
    for key in sorted(set(saved) | set(settings)):
        if key in RESUMABLE_CHANGES:
            continue
        if saved.get(key) != settings.get(key):
            flag = f"`{key}`"
            raise PlanError(
                f"`resume` {path}: the checkpoint was made with {flag} {saved.get(key)}, "
                f"not {settings.get(key)}; give the options of the interrupted run"
            )


def model_bytes(model: onnx.ModelProto) -> torch.Tensor:
    """A model as a uint8 tensor (checkpoints hold only tensors and plain data)."""
    return torch.frombuffer(bytearray(model.SerializeToString()), dtype=torch.uint8)


def model_from_bytes(tensor: torch.Tensor) -> onnx.ModelProto:
    """The inverse of :func:`model_bytes`."""
    return onnx.load_from_string(tensor.numpy().tobytes())


def validation_from_json(document: Mapping[str, Any] | None) -> ValidationResult | None:
    """The oracle's result back from its JSON form (in a fine-tuning checkpoint)."""
    if document is None:
        return None
    ran = document["runtime"]
    unchecked = document["unchecked"]
    worst = (str(document["worst_tensor"]), float(document["max_relative_error"]))
    return ValidationResult(
        errors=dict(ran["errors"]),
        tolerance=float(document["tolerance"]),
        provider=str(ran["provider"]),
        tensors=int(document["tensors_compared"]),
        worst_tensor=worst if unchecked is None else ("", 0.0),
        degenerate=tuple(document["degenerate_tensors"]),
        runtime_tolerance=float(ran["tolerance"]),
        unchecked=unchecked,
    )
