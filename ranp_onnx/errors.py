"""Errors: one user-facing base class, specific subclasses, and internal bugs apart.

A :class:`RanpError` is the user's problem (a bad file, an impossible request): the CLI
prints its message on one line and exits with :attr:`RanpError.exit_code`, no traceback.
Anything else that escapes is a bug in ranp-onnx and keeps its traceback.
"""

from __future__ import annotations


class RanpError(Exception):
    """Base class of every error caused by the user's input or request."""

    exit_code: int = 1


class ModelLoadError(RanpError):
    """The model file cannot be read: missing, not ONNX, truncated, unsafe external data."""


class UnsupportedModelError(RanpError):
    """The model is valid ONNX but uses something ranp-onnx or onnxruntime cannot handle."""


class InputShapeError(RanpError):
    """An ``--input-shape`` is malformed, names no input, or a needed dimension is unknown."""


class DataError(RanpError):
    """Scoring data is missing, malformed, or does not fit the model's inputs."""


class PlanError(RanpError):
    """A pruning request or a saved plan cannot be satisfied on this model."""


class ExportError(RanpError):
    """A torch module cannot be exported as asked (an unknown exporter, an option it lacks)."""


class OutputExistsError(RanpError):
    """The output path exists and ``--force`` was not given."""


class InsufficientMemoryError(RanpError):
    """The estimated memory of a run exceeds the memory available (``--no-memory-check``)."""


class ValidationError(RanpError):
    """The rewritten model does not reproduce the masked original in onnxruntime."""

    exit_code = 3


class InternalError(Exception):
    """A bug in ranp-onnx: an invariant that should always hold did not."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none)."""
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def last_line(error: BaseException) -> str:
    """The last line of an error's message: onnx puts the root cause there."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
