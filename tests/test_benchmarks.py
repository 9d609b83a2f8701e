"""The benchmark harness runs end to end on small sizes, so that ``make bench`` cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--repeats", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    for heading in ("## (a)", "## (b)", "## (c)", "## (d)", "## (e)", "## (f)", "## (g)"):
        assert heading in text
    assert "Command: `python -m benchmarks.run --quick --repeats 1" in text
    assert "prune total /" in text and "graph evaluator / native torch" in text
    assert "| 0.8 --round-to 16 |" in text
    # The quick UNet ends in a Softmax: its logits are timed too, and the time by op shown.
    assert "| full, logits (final Softmax removed) |" in text and "| 0.8, logits |" in text
    assert "kernel time by op (ms per run, median of profiled runs)" in text
    assert "peak resident memory" in text
    assert text.count("**met**") + text.count("**missed**") >= 4
    # (g): every ratio printed, the summary, and the payoff rows of full and 0.8.
    section = text[text.index("## (g)") :]
    assert section.count("| unet3d-15 x0.125 1x16x16x16 |") == 4
    assert "within +-10% of the measured peak: **" in section
    assert "| full | 1.0 |" in section and "| 0.8 |" in section


def test_generated_graphs_are_valid_and_have_the_asked_convs() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.scale import generated_graph

    model = generated_graph(12)
    onnx.checker.check_model(model, full_check=True)
    assert sum(node.op_type == "Conv" for node in model.graph.node) == 12
    assert {"Add", "Concat"} <= {node.op_type for node in model.graph.node}


def test_the_softmax_variants_timed_are_one_softmax() -> None:
    import numpy as np
    import onnxruntime
    import torch

    sys.path.insert(0, str(ROOT))
    from benchmarks.softmax import variants

    x = np.random.default_rng(0).standard_normal((1, 5, 3, 4, 2)).astype(np.float32) * 4
    expected = torch.softmax(torch.from_numpy(x), 1).numpy()
    for label, model in variants(x.shape).items():
        onnx.checker.check_model(model, full_check=True)
        session = onnxruntime.InferenceSession(model.SerializeToString())
        (y,) = session.run(None, {"x": x})
        want = np.maximum(x, 0) if label.startswith("Relu") else expected
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6, err_msg=label)
