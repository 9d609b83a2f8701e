"""The accuracy study in examples/: its data generators, its metrics, and a tiny run.

The tiny run is what CI runs of the study: every method of both tasks, pruned, trained
for a few steps and tabled, in well under two minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples import report  # noqa: E402
from examples.segmentation3d.data import IGNORE_INDEX, generate, surface  # noqa: E402
from examples.segmentation3d.objects import FAMILIES  # noqa: E402
from examples.segmentation3d.task import shape_miou  # noqa: E402
from examples.video3d import data as clips  # noqa: E402

METHODS = ("Full", "Random NP", "Layer-wise NP", "Vanilla NP", "Weighted NP", "RANP-m", "RANP-f")


# --- segmentation data -------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_object_types_have_two_to_four_parts(family: str) -> None:
    kinds = FAMILIES[family]
    assert len(kinds.types) >= 3
    assert all(2 <= len(kind.parts) <= 4 for kind in kinds.types)
    labels = [label for i in range(len(kinds.types)) for label in kinds.part_labels(i)]
    assert labels == list(range(kinds.classes))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_segmentation_labels_in_range_and_per_type(family: str) -> None:
    kinds = FAMILIES[family]
    data = generate(family, 12, size=24, seed=3)
    assert data.inputs.shape == (12, 1, 24, 24, 24) and data.inputs.dtype == np.float32
    assert data.labels.shape == (12, 24, 24, 24) and data.labels.dtype == np.int64
    occupied = data.labels != IGNORE_INDEX
    np.testing.assert_array_equal(data.inputs[:, 0] == 1.0, occupied)
    assert set(np.unique(data.inputs)) <= {0.0, 1.0}
    for labels, kind in zip(data.labels, data.object_types):
        present = set(np.unique(labels[labels != IGNORE_INDEX]).tolist())
        assert present, "every object occupies some voxels"
        assert present <= set(kinds.part_labels(int(kind)))
    # Every type appears and every part class shows up somewhere.
    assert set(data.object_types.tolist()) == set(range(len(kinds.types)))
    assert set(np.unique(data.labels[occupied]).tolist()) == set(range(kinds.classes))


def test_segmentation_is_deterministic_by_seed_and_index() -> None:
    first = generate("shapes-a", 6, size=16, seed=1)
    again = generate("shapes-a", 6, size=16, seed=1)
    longer = generate("shapes-a", 9, size=16, seed=1)
    other = generate("shapes-a", 6, size=16, seed=2)
    test = generate("shapes-a", 6, size=16, seed=1, split="test")
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.labels, longer.labels[:6])
    assert not np.array_equal(first.labels, other.labels)
    assert not np.array_equal(first.labels, test.labels)


def test_surface_keeps_the_shell_of_a_solid() -> None:
    solid = np.zeros((7, 7, 7), dtype=bool)
    solid[1:6, 1:6, 1:6] = True
    shell = surface(solid)
    assert shell.sum() == 5**3 - 3**3
    assert not shell[3, 3, 3] and shell[1, 3, 3]


def test_shape_miou_counts_absent_parts_as_one() -> None:
    labels = np.full((2, 2, 2, 2), IGNORE_INDEX)
    labels[0, 0, 0, :] = [0, 1]  # an airplane (parts 0-3) with parts 0 and 1 only
    labels[1, 0, 0, :] = [9, 10]  # a mug (parts 9, 10)
    types = np.array([0, 3])
    perfect = np.where(labels == IGNORE_INDEX, 0, labels)
    assert shape_miou(perfect, labels, types) == pytest.approx(100.0)
    wrong = perfect.copy()
    wrong[1, 0, 0, 1] = 9  # handle called body: body IoU 1/2, handle 0
    assert shape_miou(wrong, labels, types) == pytest.approx(100 * (1 + 0.25) / 2)


# --- video data --------------------------------------------------------------------------


def test_clips_shapes_labels_and_determinism() -> None:
    data = clips.generate(20, seed=0)
    assert data.inputs.shape == (20, 1, 16, 32, 32) and data.inputs.dtype == np.float32
    assert data.labels.tolist() == [i % 10 for i in range(20)]
    again = clips.generate(20, seed=0)
    np.testing.assert_array_equal(data.inputs, again.inputs)
    assert not np.array_equal(data.inputs, clips.generate(20, seed=1).inputs)


def test_train_and_test_clips_use_different_digit_images() -> None:
    train, test = clips.digit_pool("train"), clips.digit_pool("test")
    for k in range(clips.CLASSES):
        assert train[k].size and test[k].size
        assert not set(train[k]) & set(test[k])


def test_clips_follow_their_class_trajectory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clips, "NOISE", 0.0)
    data = clips.generate(40, seed=5)
    for clip, label, positions in zip(data.inputs[:, 0], data.labels, data.positions):
        for frame, (row, col) in zip(clip, np.rint(positions).astype(int)):
            window = np.zeros(frame.shape, dtype=bool)
            window[row : row + clips.DIGIT, col : col + clips.DIGIT] = True
            assert frame[window].sum() > 0 and not frame[~window].any()
        rows, cols = positions[:, 0], positions[:, 1]
        d_row, d_col = rows[-1] - rows[0], cols[-1] - cols[0]
        kind = clips.TRAJECTORIES[int(label)]
        if kind == "left to right":
            assert d_col > 5 and np.ptp(rows) == 0
        elif kind == "right to left":
            assert d_col < -5 and np.ptp(rows) == 0
        elif kind == "top to bottom":
            assert d_row > 5 and np.ptp(cols) == 0
        elif kind == "bottom to top":
            assert d_row < -5 and np.ptp(cols) == 0
        elif kind == "diagonal down-right":
            assert d_row > 5 and d_col > 5
        elif kind == "diagonal up-right":
            assert d_row < -5 and d_col > 5
        elif kind.startswith("circle"):
            centre = positions.mean(axis=0)
            angles = np.unwrap(np.arctan2(-(rows - centre[0]), cols - centre[1]))
            turn = angles[-1] - angles[0]
            assert turn < -np.pi if kind == "circle clockwise" else turn > np.pi
        elif kind == "bounce up and down":
            assert np.ptp(cols) == 0 and np.ptp(rows) > 5
        else:
            assert d_col > 5 and np.ptp(rows) > 3


# --- the tiny study ----------------------------------------------------------------------


def test_tiny_study_writes_every_method(tmp_path: Path) -> None:
    out = tmp_path / "study"
    command = [sys.executable, "-m", "examples.study", "--tiny", "--out", str(out)]
    subprocess.run(command, cwd=ROOT, check=True, timeout=240)
    results = json.loads((out / "results.json").read_text())
    assert set(results["tasks"]) == {"segmentation3d", "video3d"}
    assert (out / "metric_vs_gflops.png").stat().st_size > 0
    for task, entry in results["tasks"].items():
        text = (out / f"table_{task}.md").read_text()
        main = text.split("### At the higher")[0]
        for method in METHODS:
            assert f"| {method} |" in main, (task, method)
        rows = [r for r in report.summarise(entry) if r.seeds]
        assert all(np.isfinite(r.metric_mean) and 0 <= r.metric_mean <= 100 for r in rows)
        assert {r.seeds for r in rows} == {len(results["seeds"])}


def test_tiny_scale_and_transfer_options(tmp_path: Path) -> None:
    out = tmp_path / "extras"
    command = [
        sys.executable, "-m", "examples.study", "--tiny", "--task", "segmentation3d",
        "--no-main", "--scale-to", "24", "--transfer", "--seeds", "0", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, timeout=240)
    entry = json.loads((out / "results.json").read_text())["tasks"]["segmentation3d"]
    rows = report.summarise(entry)
    scale = [r for r in rows if r.group == "scale"]
    assert [(r.method, r.variant) for r in scale] == [
        ("full", ""),
        ("ranp-f", "plan from study size"),
        ("ranp-f", "pruned at size"),
    ]
    assert entry["scale_shape"] == [1, 24, 24, 24]
    # The plan from 16^3 keeps the same channels at 24^3, so the same share of FLOPs.
    moved = scale[1]
    assert 0 < moved.gflops < scale[0].gflops
    transfer = {(r.method, r.variant) for r in rows if r.group == "transfer"}
    assert ("ranp-f", "scored on transfer data") in transfer
    assert ("ranp-f", "scored on own data") in transfer
    text = (out / "table_segmentation3d.md").read_text()
    assert "Scalability" in text and "Transferability" in text
    assert not (out / "metric_vs_gflops.png").exists()  # no main comparison to draw
