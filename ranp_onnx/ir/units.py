"""Units: the one definition of a megabyte, and byte sizes as users write them."""

from __future__ import annotations

import re

from ..errors import PlanError

#: A megabyte as every figure of ranp-onnx counts it: 2^20 bytes (the paper's MB).
MB = float(1 << 20)
#: A gigabyte: 2^30 bytes.
GB = float(1 << 30)
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?I?B?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse a memory size: ``11GB``, ``500 MB``, ``1.5GiB``, ``2048`` (bytes).

    K, M, G and T are powers of 1024, with or without the ``i`` (GPU memory is sold that
    way: an "11 GB" card holds 11 x 2^30 bytes).

    Raises:
        PlanError: Not a size.
    """
    match = _SIZE.match(text)
    if match is None:
        raise PlanError(f"'{text}' is not a memory size (e.g. 11GB, 500MB)")
    value = float(match.group(1))
    unit = match.group(2).upper().rstrip("B").rstrip("I")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
    if value <= 0:
        raise PlanError(f"'{text}': the size must be positive")
    return int(value * scale)
