"""``regularize`` and ``regularize_module`` end to end on a small C3D."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from regularization_models import CLIP, FAST, clip_batches, clips_npz, small_c3d

from ranp_onnx import RegularizeOptions, regularize, regularize_module
from ranp_onnx.errors import DataError
from ranp_onnx.regularization.loop import Interrupted, RunProgress

SHAPES = {"input": (1, *CLIP)}


def run(**settings: Any) -> Any:
    options = RegularizeOptions(speedup=2.0, **{**FAST, **settings})
    return regularize(small_c3d(), clip_batches(), options, input_shapes=SHAPES)


def runs_in_onnxruntime(model: onnx.ModelProto) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString())
    (output,) = session.run(None, {"input": np.zeros((2, *CLIP), np.float32)})
    return output


def test_channel_regularization_halves_the_flops_and_proves_the_rewrite() -> None:
    result = run()
    record = result.record
    assert result.after.totals.flops <= result.before.totals.flops / 2
    assert result.sparse_flops == result.after.totals.flops and result.speedup >= 2
    assert runs_in_onnxruntime(result.model).shape == (2, 4)
    removed = record["removed"]
    layers = record["allocation"]["layers"]
    assert removed["groups"] == removed["due"] == sum(layer["due"] for layer in layers) > 0
    assert removed["forced"] == 0 and removed["channels_removed"] == removed["due"]
    # The due groups had fallen to about 1e-3 of their layer's kept mean when they went.
    assert removed["max_ratio_to_kept_mean"] < 0.01
    assert record["validation"]["max_relative_error"] < 1e-5
    assert 0 < record["iterations"]["regularize"] < 400
    assert [layer["removed"] for layer in layers] == [layer["due"] for layer in layers]
    # The record traces groups: a removed one's norm ends at 0, a kept one's does not.
    last = record["history"]["snapshots"][-1]
    assert min(min(norms) for norms in last["norms"]) == 0.0


def test_resume_after_ctrl_c_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    data = clips_npz(tmp_path / "clips.npz")
    options = RegularizeOptions(speedup=2.0, finetune=6, checkpoint_every=50, **FAST)
    model = small_c3d()
    straight = regularize(model, data, options, input_shapes=SHAPES)
    checkpoint = tmp_path / "run.ckpt"

    def interrupt_at(phase: str, iteration: int) -> Any:
        def progress(report: RunProgress) -> None:
            if report.phase == phase and report.iteration == iteration:
                os.kill(os.getpid(), signal.SIGINT)

        return progress

    stops = []
    for phase, iteration, resume in (
        ("regularize", 20, None),
        ("finetune", 3, checkpoint),
    ):
        with pytest.raises(Interrupted) as stopped:
            regularize(
                model,
                data,
                options,
                input_shapes=SHAPES,
                checkpoint=checkpoint,
                resume=resume,
                progress=interrupt_at(phase, iteration),
            )
        stops.append((stopped.value.phase, stopped.value.iteration))
        assert stopped.value.exit_code == 130 and checkpoint.exists()
    assert stops == [("regularize", 21), ("finetune", 4)]
    resumed = regularize(
        model, data, options, input_shapes=SHAPES, checkpoint=checkpoint, resume=checkpoint
    )
    for mine, theirs in zip(resumed.model.graph.initializer, straight.model.graph.initializer):
        assert mine.name == theirs.name
        np.testing.assert_array_equal(numpy_helper.to_array(mine), numpy_helper.to_array(theirs))
    assert resumed.record["iterations"] == straight.record["iterations"]
    assert resumed.record["history"]["loss"] == straight.record["history"]["loss"]


def test_resume_refuses_other_options(tmp_path: Path) -> None:
    from ranp_onnx.errors import PlanError

    checkpoint = tmp_path / "run.ckpt"
    options = RegularizeOptions(speedup=2.0, iterations=2, checkpoint_every=1, **FAST)
    regularize(small_c3d(), clip_batches(), options, input_shapes=SHAPES, checkpoint=checkpoint)
    other = RegularizeOptions(speedup=2.0, iterations=2, **{**FAST, "lr": 0.01})
    with pytest.raises(PlanError, match=r"made with `lr` 0\.05, not 0\.01"):
        regularize(small_c3d(), clip_batches(), other, input_shapes=SHAPES, resume=checkpoint)


def test_regularize_module_shrinks_the_users_module_and_fine_tunes_it() -> None:
    from ranp_onnx.zoo import build_model

    built = build_model("c3d", input_shape=CLIP, width_mult=0.125, classes=4, seed=0)
    module = built.module
    batches = clip_batches()
    example = torch.from_numpy(batches[0].inputs["input"][:1])
    data = [(torch.from_numpy(b.inputs["input"]), torch.from_numpy(b.labels)) for b in batches]
    result = regularize_module(module, example, data, speedup=2.0, finetune=4, **FAST)
    assert result.in_place and result.module is module
    assert not module.training  # put back in the mode it came in
    assert result.speedup >= 2.0 and result.record["iterations"]["finetune"] == 4
    with torch.no_grad():
        ours = module(example).numpy()
    session = ort.InferenceSession(result.model.SerializeToString())
    (theirs,) = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_unlabelled_batches_are_refused() -> None:
    inputs = [{"input": b.inputs["input"]} for b in clip_batches()]
    with pytest.raises(DataError, match="the data needs labels"):
        regularize(small_c3d(), inputs, RegularizeOptions(speedup=2.0, **FAST), input_shapes=SHAPES)
