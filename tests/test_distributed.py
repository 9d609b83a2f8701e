"""Distributed scoring: two CPU ranks under torchrun (gloo) equal one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pruning_models import CLASSES, segmentation_npz, zoo_model

from ranp_onnx.errors import DataError
from ranp_onnx.ir.save import save_model
from ranp_onnx.scoring import distributed

SHAPE = (1, 16, 16, 16)
TORCHRUN = Path(sys.executable).with_name("torchrun")
CLI = Path(sys.executable).with_name("ranp-onnx")
WORKER = Path(__file__).with_name("distributed_worker.py")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("distributed")
    return {
        "model": save_model(zoo_model("unet3d-15"), folder / "unet.onnx"),
        # Three batches of one: rank 0 scores two, rank 1 one.
        "data": segmentation_npz(folder / "train.npz", SHAPE, CLASSES, samples=3),
        "folder": folder,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _torchrun(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    environment["OMP_NUM_THREADS"] = "1"
    command = [
        str(TORCHRUN), "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
        "--master-port", str(_free_port()), *map(str, args),
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


def test_two_ranks_give_the_statistics_of_one_process(files: dict[str, Path]) -> None:
    folder = files["folder"]
    single = subprocess.run(
        [sys.executable, WORKER, files["model"], files["data"], folder / "stats"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    ranks = _torchrun(WORKER, files["model"], files["data"], folder / "stats", cwd=folder)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    expected = np.load(folder / "stats.single.npz")
    for rank in (0, 1):
        got = np.load(folder / f"stats.{rank}.npz")
        assert int(got["batches"]) == 3
        assert sorted(got.files) == sorted(expected.files)
        for key in expected.files:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-9, err_msg=key)


def test_prune_under_torchrun_writes_once_and_equals_one_process(
    files: dict[str, Path],
) -> None:
    folder = files["folder"] / "cli"
    folder.mkdir()
    common = ["--data", files["data"], "--ignore-index", "255", "--sparsity", "0.5", "--quiet"]
    single = subprocess.run(
        [CLI, "prune", files["model"], *common, "-o", "one.onnx", "--plan", "one.json"],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    ranks = _torchrun(
        CLI, "prune", files["model"], *common, "-o", "two.onnx", "--plan", "two.json", cwd=folder
    )
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    # Only rank 0 wrote, and it reported once.
    assert sorted(p.name for p in folder.iterdir()) == [
        "one.json",
        "one.onnx",
        "two.json",
        "two.onnx",
    ]
    assert ranks.stdout.count("wrote ") == 1
    one, two = (json.loads((folder / name).read_text()) for name in ("one.json", "two.json"))
    assert [g["kept"] for g in one["groups"]] == [g["kept"] for g in two["groups"]]
    assert one["achieved"] == two["achieved"]
    for first, second in zip(one["groups"], two["groups"]):
        for key, value in first["scores"].items():
            if value is None:
                assert second["scores"][key] is None, key
            else:
                assert second["scores"][key] == pytest.approx(value, rel=1e-5, abs=1e-12), key


def test_world_from_env() -> None:
    assert distributed.world_from_env({}) == distributed.World(0, 1, 0)
    world = distributed.world_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.local_rank, world.is_main) == (3, 4, 1, False)
    assert world.distributed
    for bad in ({"WORLD_SIZE": "two"}, {"WORLD_SIZE": "2", "RANK": "2"}):
        with pytest.raises(DataError):
            distributed.world_from_env(bad)


def test_shard_takes_every_nth_batch() -> None:
    world = distributed.World(rank=1, size=3)
    assert list(distributed.shard(range(8), world)) == [1, 4, 7]
    assert list(distributed.shard(range(3), distributed.World())) == [0, 1, 2]


def test_joining_without_a_rendezvous_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    world = distributed.World(rank=1, size=2)
    with pytest.raises(DataError, match="rank 1 of 2: cannot join the gloo process group"):
        distributed.join(world, torch.device("cpu"))
