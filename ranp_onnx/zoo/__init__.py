"""The model zoo: the paper's 3D CNNs in PyTorch and their export to ONNX.

``build_model`` makes an initialised torch module from a zoo name and a preset;
``export_model`` writes it to an ONNX file. Importing this package imports torch.
"""

from __future__ import annotations

from ..torch_api.export import EXPORTERS, Exporter, export_module
from .export import ExportResult, export_built, export_model
from .initialization import INITIALIZATIONS, Initialization, initialize
from .registry import (
    ZOO,
    BuiltModel,
    ModelConfig,
    Preset,
    ZooEntry,
    ZooError,
    build_model,
    describe_zoo,
    parse_volume_shape,
    zoo_entry,
)

__all__ = [
    "EXPORTERS",
    "INITIALIZATIONS",
    "ZOO",
    "BuiltModel",
    "ExportResult",
    "Exporter",
    "Initialization",
    "ModelConfig",
    "Preset",
    "ZooEntry",
    "ZooError",
    "build_model",
    "describe_zoo",
    "export_built",
    "export_model",
    "export_module",
    "initialize",
    "parse_volume_shape",
    "zoo_entry",
]
