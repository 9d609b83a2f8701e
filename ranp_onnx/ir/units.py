"""Units: the one definition of a megabyte, and byte sizes as users write them."""

from __future__ import annotations

#: A megabyte as every figure of ranp-onnx counts it: 2^20 bytes (the paper's MB).
MB = float(1 << 20)
#: A gigabyte: 2^30 bytes.
GB = float(1 << 30)
