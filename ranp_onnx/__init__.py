"""ranp-onnx: Resource Aware Neuron Pruning (RANP) at initialization for 3D CNNs, on ONNX.

The pipeline, one module per stage: :mod:`~ranp_onnx.load` -> :mod:`~ranp_onnx.analyse`
-> :mod:`~ranp_onnx.costs` -> :mod:`~ranp_onnx.report`. Op knowledge lives in
:mod:`ranp_onnx.ops`, one rule per op family.
"""

from __future__ import annotations

from .analyse import GraphAnalysis, analyse, parse_input_shapes
from .costs import CostReport, count_costs
from .errors import RanpError
from .load import LoadedModel, load_model

__all__ = [
    "CostReport",
    "GraphAnalysis",
    "LoadedModel",
    "RanpError",
    "analyse",
    "count_costs",
    "load_model",
    "parse_input_shapes",
]
