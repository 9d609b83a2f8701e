"""Kernel time by operator type: parsing onnxruntime's profile, and the bound it gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from builders import make_model
from onnx import helper

from ranp_onnx.analysis.costs import CostReport, count_costs
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.reporting.profiling import Measurement, kernel_ms_by_op
from ranp_onnx.reporting.tables import format_comparison


def event(op: str, microseconds: float, name: str = "n") -> dict[str, object]:
    return {
        "cat": "Node",
        "name": f"{name}_kernel_time",
        "dur": microseconds,
        "args": {"op_name": op},
    }


def test_kernel_times_are_summed_by_op_type_largest_first() -> None:
    events = [
        {"cat": "Session", "name": "model_run", "dur": 99_000},
        event("Conv", 1500, "a"),
        event("Softmax", 4000),
        event("Conv", 2000, "b"),
        # Not kernel time: onnxruntime's fence events around each kernel.
        {"cat": "Node", "name": "a_fence_before", "dur": 7, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "c_kernel_time", "dur": 5, "args": {}},
    ]
    times = kernel_ms_by_op(events)
    assert times == {"Softmax": 4.0, "Conv": 3.5}
    assert list(times) == ["Softmax", "Conv"]


def test_each_node_counts_once_its_median_over_the_runs_after_the_first() -> None:
    # Three runs: the first (allocating) is left out; then a: median(2, 4), b: median(6, 7).
    events = [event("Conv", us, "a") for us in (10_000, 2000, 4000)]
    events += [event("Relu", us, "b") for us in (50, 6000, 7000)]
    assert kernel_ms_by_op(events) == {"Relu": 6.5, "Conv": 3.0}


def test_shares_sum_to_one() -> None:
    measured = Measurement("CPUExecutionProvider", 1, 10.0, None, {"A": 3.0, "B": 1.0})
    assert measured.op_shares() == {"A": 0.75, "B": 0.25}
    assert Measurement("CPUExecutionProvider", 1, 10.0, None).op_shares() == {}


def conv_costs(folder: Path) -> CostReport:
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        [("x", [1, 2, 4, 4, 4])],
        [("y", None)],
        {"w": np.ones((3, 2, 1, 1, 1), np.float32)},
    )
    onnx.save_model(model, str(folder / "conv.onnx"))
    return count_costs(analyse(str(folder / "conv.onnx")))


def test_comparison_names_the_ops_that_did_not_get_faster(tmp_path: Path) -> None:
    costs = conv_costs(tmp_path)
    before = Measurement(
        "CPUExecutionProvider", 3, 1000.0, 10.0, {"FusedConv": 900.0, "Softmax": 100.0}
    )
    # The convolutions got 30x faster; the Softmax did not (its time rose, within noise).
    after = Measurement(
        "CPUExecutionProvider", 3, 140.0, 5.0, {"Softmax": 110.0, "FusedConv": 30.0}
    )
    lines = format_comparison(costs, costs, (before, after)).splitlines()
    start = lines.index("kernel time by op (ms per run, median of profiled runs)")
    assert lines[start + 3].split() == ["FusedConv", "900.00", "30.00", "30.0x"]
    assert lines[start + 4].split() == ["Softmax", "100.00", "110.00", "0.9x"]
    # 110 of 140 ms in the Softmax: 1000 / (140 * 110/140) = 9.1x at most.
    assert lines[start + 5] == (
        "not faster    Softmax (0.9x) takes 79% of the pruned model's time: with it, at most 9.1x "
        "faster than the original here"
    )
    # A breakdown where everything got faster names nothing.
    quick = Measurement("CPUExecutionProvider", 3, 50.0, 5.0, {"Softmax": 20.0, "FusedConv": 30.0})
    assert not any(
        line.startswith("not faster")
        for line in format_comparison(costs, costs, (before, quick)).splitlines()
    )
