from __future__ import annotations

import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builders import make_model
from onnx import helper

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.errors import DataError
from ranp_onnx.ir.graph import GraphAnalysis
from ranp_onnx.scoring.data import LABELS_BY_LOSS, open_data

RNG = np.random.default_rng(0)


def conv_graph(side: int = 4, classes: int = 3, *, pool: bool = False) -> GraphAnalysis:
    """x [N, 1, s, s, s] -> 1x1x1 Conv -> logits [N, C, s, s, s] (or [N, C] with pool)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["conv"] if pool else ["logits"])]
    if pool:
        nodes += [
            helper.make_node("GlobalAveragePool", ["conv"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["logits"]),
        ]
    weight = RNG.standard_normal((classes, 1, 1, 1, 1)).astype(np.float32)
    model = make_model(
        nodes, [("x", ["N", 1, side, side, side])], [("logits", None)], {"w": weight}
    )
    return analyse(model, {"x": (1, 1, side, side, side)})


def two_input_graph() -> GraphAnalysis:
    """a, b [N, 1, 4, 4, 4] -> Add -> Conv -> logits [N, 3, 4, 4, 4]."""
    nodes = [
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Conv", ["sum", "w"], ["logits"]),
    ]
    weight = RNG.standard_normal((3, 1, 1, 1, 1)).astype(np.float32)
    inputs = [("a", ["N", 1, 4, 4, 4]), ("b", ["N", 1, 4, 4, 4])]
    model = make_model(nodes, inputs, [("logits", None)], {"w": weight})
    return analyse(model, {"a": (1, 1, 4, 4, 4), "b": (1, 1, 4, 4, 4)})


@pytest.fixture(scope="module")
def seg() -> GraphAnalysis:
    return conv_graph()


def images(n: int, side: int = 4, dtype: Any = np.float32) -> np.ndarray:
    return RNG.standard_normal((n, 1, side, side, side)).astype(dtype)


def classes(n: int, side: int = 4, dtype: Any = np.int64) -> np.ndarray:
    return RNG.integers(0, 3, (n, side, side, side)).astype(dtype)


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


# --- one .npz file ----------------------------------------------------------------------


def test_npz_batches_in_file_order_with_a_partial_last_batch(tmp_path: Path, seg: GraphAnalysis):
    x, y = images(5, dtype=np.float64), classes(5, dtype=np.uint8)
    source = open_data(save_npz(tmp_path / "train.npz", inputs=x, labels=y), seg, batch_size=2)
    assert len(source) == 3
    assert source.describe() == "train.npz: 5 samples, 3 batches of 2 (the last of 1)"
    assert source.labelled and source.samples == 5
    batches = list(source)
    assert [b.inputs["x"].shape[0] for b in batches] == [2, 2, 1]
    assert all(b.inputs["x"].dtype == np.float32 and b.labels is not None for b in batches)
    assert all(b.labels.dtype == np.int64 for b in batches if b.labels is not None)
    np.testing.assert_array_equal(np.concatenate([b.inputs["x"] for b in batches]), x.astype("f4"))
    labels = [b.labels for b in batches if b.labels is not None]
    np.testing.assert_array_equal(np.concatenate(labels), y)


def test_iterating_again_starts_from_the_beginning(tmp_path: Path, seg: GraphAnalysis):
    path = save_npz(tmp_path / "t.npz", inputs=images(4), labels=classes(4))
    source = open_data(path, seg, batch_size=3)
    first, second = list(source), list(source)
    assert len(first) == len(second) == 2
    for one, two in zip(first, second):
        np.testing.assert_array_equal(one.inputs["x"], two.inputs["x"])


def test_batches_limits_the_pass(tmp_path: Path, seg: GraphAnalysis):
    path = save_npz(tmp_path / "t.npz", inputs=images(10), labels=classes(10))
    source = open_data(path, seg, batch_size=3, batches=2)
    assert len(source) == len(list(source)) == 2
    assert source.describe() == "t.npz: 10 samples, first 2 of 4 batches of 3"
    assert len(open_data(path, seg, batch_size=3, batches=9)) == 4
    assert open_data(path, seg, batch_size=5).describe() == "t.npz: 10 samples, 2 batches of 5"


def test_single_input_array_may_be_named_after_the_input(tmp_path: Path, seg: GraphAnalysis):
    x = images(2)
    batch = next(iter(open_data(save_npz(tmp_path / "t.npz", x=x, labels=classes(2)), seg)))
    np.testing.assert_array_equal(batch.inputs["x"], x[:1])


def test_multi_input_model_reads_one_array_per_input_name(tmp_path: Path):
    graph = two_input_graph()
    a, b = images(3), images(3)
    path = save_npz(tmp_path / "t.npz", b=b, a=a, labels=classes(3))
    (batch,) = open_data(path, graph, batch_size=3)
    assert list(batch.inputs) == ["a", "b"]
    np.testing.assert_array_equal(batch.inputs["a"], a)
    np.testing.assert_array_equal(batch.inputs["b"], b)
    single = save_npz(tmp_path / "single.npz", inputs=a, labels=classes(3))
    with pytest.raises(DataError, match=r"single array 'inputs'.*'a'.*\(N, 1, 4, 4, 4\)"):
        open_data(single, graph)


def test_compressed_and_fortran_ordered_arrays(tmp_path: Path, seg: GraphAnalysis):
    x, y = images(3), classes(3)
    path = tmp_path / "t.npz"
    np.savez_compressed(path, inputs=np.asfortranarray(x), labels=y)
    batches = list(open_data(path, seg, batch_size=2))
    np.testing.assert_array_equal(np.concatenate([b.inputs["x"] for b in batches]), x)
    assert all(b.inputs["x"].flags.c_contiguous for b in batches)


def test_classification_takes_per_sample_labels(tmp_path: Path):
    graph = conv_graph(pool=True)
    y = np.array([0, 2, 1], dtype=np.int32)
    (batch,) = open_data(
        save_npz(tmp_path / "t.npz", inputs=images(3), labels=y), graph, batch_size=3
    )
    assert batch.labels is not None
    np.testing.assert_array_equal(batch.labels, y)
    bad = save_npz(tmp_path / "bad.npz", inputs=images(3), labels=classes(3))
    with pytest.raises(DataError, match=r"'labels' has shape \(3, 4, 4, 4\).*\(N,\)"):
        open_data(bad, graph)


def test_mse_takes_float_targets_shaped_like_the_output(tmp_path: Path, seg: GraphAnalysis):
    targets = RNG.standard_normal((2, 3, 4, 4, 4))
    path = save_npz(tmp_path / "t.npz", inputs=images(2), labels=targets)
    (batch,) = open_data(path, seg, batch_size=2, loss="mse")
    assert batch.labels is not None and batch.labels.dtype == np.float32
    np.testing.assert_allclose(batch.labels, targets, rtol=1e-6)
    ints = save_npz(tmp_path / "ints.npz", inputs=images(2), labels=classes(2))
    with pytest.raises(DataError, match=r"'labels' has shape.*float array of targets"):
        open_data(ints, seg, loss="mse")


def test_ignore_index(tmp_path: Path, seg: GraphAnalysis):
    y = classes(2)
    y[0, 0, 0, 0] = 255
    path = save_npz(tmp_path / "t.npz", inputs=images(2), labels=y)
    (batch,) = open_data(path, seg, batch_size=2, ignore_index=255)
    assert batch.labels is not None and batch.labels[0, 0, 0, 0] == 255
    with pytest.raises(
        DataError, match=r"'labels' has label 255 .*outside \[0, 3\).*\(N, 4, 4, 4\)"
    ):
        list(open_data(path, seg))


# --- bad data ---------------------------------------------------------------------------


X = r"\(N, 1, 4, 4, 4\) to match the input 'x' \[N, 1, 4, 4, 4\]"
Y = r"\(N, 4, 4, 4\) to match the output 'logits' \[N, 3, 4, 4, 4\]"


def bad_cases() -> dict[str, tuple[dict[str, np.ndarray], str]]:
    """Bad arrays for the 1-channel 4^3 segmentation model, and the message each gives."""
    x, y = images(2), classes(2)
    objects = np.array([None, 1], dtype=object)
    return {
        "input shape": ({"inputs": images(2, side=5), "labels": y}, "'inputs' has shape.*" + X),
        "input rank": (
            {"inputs": x[:, 0], "labels": y},
            r"'inputs' has shape \(2, 4, 4, 4\).*" + X,
        ),
        "int inputs": (
            {"inputs": x.astype(np.int32), "labels": y},
            "'inputs' has dtype int32.*" + X,
        ),
        "bool inputs": ({"inputs": x > 0, "labels": y}, "'inputs' has dtype bool.*" + X),
        "float labels": (
            {"inputs": x, "labels": y.astype("f4")},
            "'labels' has dtype float32.*" + Y,
        ),
        "label shape": ({"inputs": x, "labels": classes(2, side=8)}, "'labels' has shape.*" + Y),
        "no labels": ({"inputs": x}, "no array 'labels'.*" + Y),
        "no inputs": ({"labels": y}, "no array 'x'.*" + X),
        "both names": ({"inputs": x, "x": x, "labels": y}, "both arrays 'inputs' and 'x'.*" + X),
        "extra array": ({"inputs": x, "labels": y, "weights": y}, "unknown array 'weights'"),
        "different N": (
            {"inputs": images(3), "labels": y},
            "arrays hold .* N: 'inputs' 3, 'labels' 2; expected the same N",
        ),
        "no samples": ({"inputs": images(0), "labels": classes(0)}, r"the arrays hold no samples"),
        "object array": ({"inputs": objects, "labels": y}, "'inputs' holds Python objects.*" + X),
    }


@pytest.mark.parametrize("case", list(bad_cases()))
def test_bad_arrays_are_refused_when_opening(tmp_path: Path, seg: GraphAnalysis, case: str):
    arrays, message = bad_cases()[case]
    path = save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=r"^bad\.npz: (array )?" + message):
        open_data(path, seg)


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e300])
def test_non_finite_inputs_are_refused_when_read(tmp_path: Path, seg: GraphAnalysis, value: float):
    x = images(4, dtype=np.float64)
    x[3, 0, 1, 1, 1] = value
    source = open_data(save_npz(tmp_path / "t.npz", inputs=x, labels=classes(4)), seg, batch_size=2)
    batches = iter(source)
    next(batches)
    with pytest.raises(DataError, match=r"'inputs' has NaN or Inf \(in samples 2 to 3.*\(N, 1, 4"):
        next(batches)


def test_non_finite_targets_are_refused(tmp_path: Path, seg: GraphAnalysis):
    targets = np.full((1, 3, 4, 4, 4), np.nan, dtype=np.float32)
    path = save_npz(tmp_path / "t.npz", inputs=images(1), labels=targets)
    with pytest.raises(DataError, match=r"'labels' has NaN or Inf \(in sample 0"):
        list(open_data(path, seg, loss="mse"))


def test_negative_labels_are_refused(tmp_path: Path, seg: GraphAnalysis):
    y = classes(1)
    y[0, 1, 2, 3] = -1
    with pytest.raises(DataError, match=r"label -1 .*outside \[0, 3\); expected"):
        list(open_data(save_npz(tmp_path / "t.npz", inputs=images(1), labels=y), seg))


def test_unusable_sources(tmp_path: Path, seg: GraphAnalysis):
    with pytest.raises(DataError, match="no such file or folder"):
        open_data(tmp_path / "missing.npz", seg)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("nothing here")
    with pytest.raises(DataError, match=r"no .npz or .npy files"):
        open_data(tmp_path / "empty", seg)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(DataError, match=r"expected an .npz file, a folder"):
        open_data(tmp_path / "model.onnx", seg)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"broken.npz: not a valid .npz file"):
        open_data(tmp_path / "broken.npz", seg)
    with pytest.raises(DataError, match="batch size must be at least 1"):
        open_data("random", seg, batch_size=0)
    with pytest.raises(DataError, match="number of batches must be at least 1"):
        open_data("random", seg, batches=0)
    with pytest.raises(DataError, match="unknown loss 'hinge'"):
        open_data(tmp_path, seg, loss="hinge")
    with pytest.raises(
        DataError, match=r"C >= 2 classes; the output 'logits' is \[N, 1, 4, 4, 4\]"
    ):
        open_data(tmp_path, conv_graph(classes=1))


def test_truncated_npy_is_refused(tmp_path: Path, seg: GraphAnalysis):
    np.save(tmp_path / "a.npy", images(2))
    np.save(tmp_path / "a.labels.npy", classes(2))
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(data[:-100])
    with pytest.raises(DataError, match=r"a\.npy: array 'inputs' is truncated"):
        open_data(tmp_path, seg)


def test_object_npy_is_refused(tmp_path: Path, seg: GraphAnalysis):
    np.save(tmp_path / "a.npy", images(1))
    np.save(tmp_path / "a.labels.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"a\.labels\.npy: array 'labels' holds Python objects"):
        open_data(tmp_path, seg)


# --- folders ----------------------------------------------------------------------------


def test_folder_batches_span_files_in_name_order(tmp_path: Path, seg: GraphAnalysis):
    parts = [(images(3), classes(3)) for _ in range(3)]
    for index, (x, y) in zip([2, 0, 1], parts):  # written out of order: read by name
        save_npz(tmp_path / f"part{index}.npz", inputs=x, labels=y)
    source = open_data(tmp_path, seg, batch_size=4)
    assert (
        source.describe()
        == f"{tmp_path.name}/: 3 sample files, 9 samples, 3 batches of 4 (the last of 1)"
    )
    batches = list(source)
    assert [b.inputs["x"].shape[0] for b in batches] == [4, 4, 1]
    ordered = [parts[1], parts[2], parts[0]]
    np.testing.assert_array_equal(
        np.concatenate([b.inputs["x"] for b in batches]), np.concatenate([x for x, _ in ordered])
    )


def test_folder_of_npy_pairs_mixed_with_npz(tmp_path: Path, seg: GraphAnalysis):
    xa, ya, xb, yb = images(2), classes(2), images(1), classes(1)
    np.save(tmp_path / "a.npy", xa)
    np.save(tmp_path / "a.labels.npy", ya)
    save_npz(tmp_path / "b.npz", inputs=xb, labels=yb)
    (tmp_path / "notes.txt").write_text("ignored")
    (batch,) = open_data(tmp_path, seg, batch_size=8)
    np.testing.assert_array_equal(batch.inputs["x"], np.concatenate([xa, xb]))
    assert batch.labels is not None
    np.testing.assert_array_equal(batch.labels, np.concatenate([ya, yb]))


def test_npy_pairs_must_be_complete(tmp_path: Path, seg: GraphAnalysis):
    np.save(tmp_path / "a.npy", images(1))
    with pytest.raises(DataError, match=r"a\.npy: no a\.labels\.npy beside it.*\(N, 4, 4, 4\)"):
        open_data(tmp_path, seg)
    (tmp_path / "a.npy").unlink()
    np.save(tmp_path / "b.labels.npy", classes(1))
    with pytest.raises(DataError, match=r"labels without inputs: no b\.npy"):
        open_data(tmp_path, seg)


def test_npy_pairs_need_a_single_input_model(tmp_path: Path):
    np.save(tmp_path / "a.npy", images(1))
    np.save(tmp_path / "a.labels.npy", classes(1))
    with pytest.raises(DataError, match=r"2 inputs \('a', 'b'\): give .npz files"):
        open_data(tmp_path, two_input_graph())


def test_a_bad_file_in_a_folder_is_named(tmp_path: Path, seg: GraphAnalysis):
    save_npz(tmp_path / "a.npz", inputs=images(1), labels=classes(1))
    save_npz(tmp_path / "b.npz", inputs=images(1, side=3), labels=classes(1))
    with pytest.raises(DataError, match=r"^b\.npz: array 'inputs' has shape \(1, 1, 3, 3, 3\)"):
        open_data(tmp_path, seg)


# --- streaming --------------------------------------------------------------------------


def peak_bytes_while_iterating(source: Any) -> int:
    tracemalloc.start()
    try:
        for _ in source:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def big() -> GraphAnalysis:
    return conv_graph(side=16)


def test_a_folder_is_streamed_not_loaded(tmp_path: Path, big: GraphAnalysis):
    for index in range(20):  # 20 files x 5 samples x 16 KiB: 1.6 MiB of inputs
        save_npz(
            tmp_path / f"{index:02d}.npz", inputs=images(5, 16), labels=classes(5, 16, np.uint8)
        )
    source = open_data(tmp_path, big, batch_size=2)
    assert len(source) == 50
    assert peak_bytes_while_iterating(source) < 600_000  # a batch is 2 x (16 + 32) KiB


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_one_big_npz_is_streamed_not_loaded(tmp_path: Path, big: GraphAnalysis, save: Any):
    save(tmp_path / "t.npz", inputs=images(100, 16), labels=classes(100, 16, np.uint8))
    assert peak_bytes_while_iterating(open_data(tmp_path / "t.npz", big, batch_size=2)) < 600_000


def test_npy_pairs_are_streamed_not_loaded(tmp_path: Path, big: GraphAnalysis):
    np.save(tmp_path / "a.npy", images(100, 16))
    np.save(tmp_path / "a.labels.npy", classes(100, 16, np.uint8))
    assert peak_bytes_while_iterating(open_data(tmp_path, big, batch_size=2)) < 600_000


def test_one_archive_is_open_at_a_time(tmp_path: Path, seg: GraphAnalysis, monkeypatch: Any):
    for index in range(6):
        save_npz(tmp_path / f"{index}.npz", inputs=images(2), labels=classes(2))
    counts = {"open": 0, "peak": 0, "total": 0}

    class CountingZipFile(zipfile.ZipFile):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            counts["open"] += 1
            counts["total"] += 1
            counts["peak"] = max(counts["peak"], counts["open"])

        def close(self) -> None:
            if self.fp is not None:
                counts["open"] -= 1
            super().close()

    monkeypatch.setattr(zipfile, "ZipFile", CountingZipFile)
    source = open_data(tmp_path, seg, batch_size=3)
    assert counts == {"open": 0, "peak": 1, "total": 6}  # headers checked one file at a time
    assert len(list(source)) == 4
    assert counts == {"open": 0, "peak": 1, "total": 12}


def test_stopping_early_closes_the_file(tmp_path: Path, seg: GraphAnalysis, monkeypatch: Any):
    save_npz(tmp_path / "t.npz", inputs=images(4), labels=classes(4))
    source = open_data(tmp_path / "t.npz", seg)
    closed: list[bool] = []
    original = zipfile.ZipFile.close
    monkeypatch.setattr(
        zipfile.ZipFile, "close", lambda self: closed.append(True) or original(self)
    )
    batches = iter(source)
    next(batches)
    batches.close()  # type: ignore[attr-defined]
    assert closed


# --- random -----------------------------------------------------------------------------


def test_random_inputs_are_seeded_gaussians_without_labels(seg: GraphAnalysis):
    source = open_data("random", seg, batch_size=3, seed=7)
    assert len(source) == 1 and not source.labelled
    assert source.describe().startswith("random: Gaussian inputs, 1 batch of 3 (seed 7)")
    (batch,) = source
    assert batch.labels is None
    assert batch.inputs["x"].shape == (3, 1, 4, 4, 4) and batch.inputs["x"].dtype == np.float32
    (again,) = open_data("random", seg, batch_size=3, seed=7)
    np.testing.assert_array_equal(batch.inputs["x"], again.inputs["x"])
    (other,) = open_data("random", seg, batch_size=3, seed=8)
    assert not np.array_equal(batch.inputs["x"], other.inputs["x"])
    several = list(open_data("random", seg, batches=3))
    assert len(several) == 3 and not np.array_equal(several[0].inputs["x"], several[1].inputs["x"])


def test_a_folder_called_random_is_a_folder(tmp_path: Path, seg: GraphAnalysis, monkeypatch: Any):
    (tmp_path / "random").mkdir()
    save_npz(tmp_path / "random" / "a.npz", inputs=images(2), labels=classes(2))
    monkeypatch.chdir(tmp_path)
    assert open_data(Path("random"), seg).labelled
    assert open_data("./random", seg).labelled
    assert not open_data("random", seg).labelled


def test_random_feeds_every_input_of_a_multi_input_model():
    (batch,) = open_data("random", two_input_graph(), batch_size=2)
    assert {name: value.shape for name, value in batch.inputs.items()} == {
        "a": (2, 1, 4, 4, 4),
        "b": (2, 1, 4, 4, 4),
    }


def test_every_loss_has_a_label_layout():
    from ranp_onnx.scoring.losses import LOSS_NAMES

    assert tuple(LABELS_BY_LOSS) == LOSS_NAMES
