"""A softmax over the channels of a 3D-UNet's output, written four ways, timed alone.

``python -m benchmarks.softmax`` times one-node (or few-node) models over a
1 x 50 x 64^3 tensor (the ShapeNet 3D-UNet's output) in onnxruntime's CPU provider, and
the same softmax in torch and in OpenVINO where installed: the note on section (c) of
``RESULTS.md`` cites them. It prints a Markdown table (best of ``--repeats`` runs).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from .common import repeat

SHAPE = (1, 50, 64, 64, 64)


def _model(
    nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], shape: tuple[int, ...]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def variants(shape: tuple[int, ...] = SHAPE) -> dict[str, onnx.ModelProto]:
    """The models timed, by label, over an input of ``shape``."""
    node = helper.make_node
    axes = onnx.numpy_helper.from_array(np.array([1], np.int64), "axes")
    return {
        "Softmax(axis=1)": _model([node("Softmax", ["x"], ["y"], axis=1)], [], shape),
        "Transpose, Softmax(axis=-1), Transpose": _model(
            [
                node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 4, 1]),
                node("Softmax", ["t"], ["s"], axis=-1),
                node("Transpose", ["s"], ["y"], perm=[0, 4, 1, 2, 3]),
            ],
            [],
            shape,
        ),
        "ReduceMax, Sub, Exp, ReduceSum, Div": _model(
            [
                node("ReduceMax", ["x"], ["m"], axes=[1], keepdims=1),
                node("Sub", ["x", "m"], ["d"]),
                node("Exp", ["d"], ["e"]),
                node("ReduceSum", ["e", "axes"], ["z"], keepdims=1),
                node("Div", ["e", "z"], ["y"]),
            ],
            [axes],
            shape,
        ),
        "Relu (one read, one write)": _model([node("Relu", ["x"], ["y"])], [], shape),
    }


def best_ms(function: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after one untimed call, in ms."""
    return min(repeat(function, repeats, warmup=1).values) * 1e3


def main() -> None:
    """Time every variant and print the table."""
    import onnxruntime
    import torch

    parser = argparse.ArgumentParser(prog="python -m benchmarks.softmax", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    reference = torch.softmax(torch.from_numpy(x), 1).numpy()
    print("| softmax over axis 1 of 1x50x64^3 | runtime | best ms | max difference |")
    print("|---|---|---|---|")
    for label, model in variants().items():
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        ms = best_ms(lambda session=session: session.run(None, {"x": x}), repeats)
        y = session.run(None, {"x": x})[0]
        difference = "-" if label.startswith("Relu") else f"{np.abs(y - reference).max():.1e}"
        print(f"| {label} | onnxruntime {onnxruntime.__version__} | {ms:.1f} | {difference} |")
    tensor = torch.from_numpy(x)
    ms = best_ms(lambda: torch.softmax(tensor, 1), repeats)
    print(f"| torch.softmax(dim=1) | torch {torch.__version__} | {ms:.1f} | 0 |")
    try:
        import openvino
    except ImportError:
        return
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "softmax.onnx"
        onnx.save(variants()["Softmax(axis=1)"], path)
        compiled = openvino.Core().compile_model(
            str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        )
    request = compiled.create_infer_request()
    ms = best_ms(lambda: request.infer({0: x}), repeats)
    y = request.infer({0: x})[0]
    version = openvino.__version__.split("-")[0]
    print(
        f"| Softmax(axis=1) | OpenVINO {version} CPU | {ms:.1f} | "
        f"{np.abs(y - reference).max():.1e} |"
    )


if __name__ == "__main__":
    main()
