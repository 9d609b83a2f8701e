"""The reproduction of Zhang et al. in examples/regularization, at its tiny CI size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.regularization import study, tables  # noqa: E402


def test_tiny_reproduction_writes_every_table(tmp_path: Path) -> None:
    assert study.main(["--tiny", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["models"]) == {"c3d", "resnet3d-18"}
    c3d = results["models"]["c3d"]
    methods = [run["method"] for run in c3d["runs"]]
    assert methods == list(study.METHODS)
    # Every C3D network reached 2x and was trained and evaluated.
    for run in c3d["runs"]:
        assert run["top1"] is not None and 0 <= run["top1"] <= 100, run
        assert run["counted_flops"] <= c3d["full_flops"] / 2
    regularized = [run for run in c3d["runs"] if run["method"] in ("SPR", "DPR", "DPR shape")]
    assert all(run["regularize_steps"] == study.TINY.recipe.regularize_cap for run in regularized)
    # ResNet's zero-padded residual streams prune: every method reaches 2x there too.
    resnet = results["models"]["resnet3d-18"]
    for run in resnet["runs"]:
        assert run["top1"] is not None, run
        assert run["counted_flops"] <= resnet["full_flops"] / 2
    assert len(c3d["table1"]["trained"]["2.0"]) == len(tables.C3D_LAYERS)
    text = (tmp_path / "tables.md").read_text()
    assert "| paper, 2x | 0.5129 |" in text and "Ours (DPR, channels)" in text
    assert (tmp_path / "fig4_loss.png").stat().st_size > 10_000
