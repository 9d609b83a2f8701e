"""The lock (requirements/constraints.txt) and requirements/pins.py, which writes and reads it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "constraints.txt"


def load_pins() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pins", ROOT / "requirements" / "pins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pins = load_pins()


def test_the_lock_pins_each_package_once_at_a_public_version() -> None:
    lines = [line for line in LOCK.read_text().splitlines() if not line.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*==\d[\w.]*", line) for line in lines), lines
    locked = pins.read_lock(LOCK)
    assert len(locked) == len(lines)
    # Both runtimes (make setup installs one of them), torch, and what the loader checks with.
    assert {"torch", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy"} <= set(locked)


def test_installed_versions_are_read_without_local_labels_or_installers() -> None:
    found = pins.installed()
    assert found["torch"] == torch.__version__.split("+")[0]
    assert not {"pip", "setuptools", "wheel", "ranp-onnx"} & set(found)
    assert pins.canonical("Typing_Extensions") == "typing-extensions"
    assert pins.public("2.13.0+cpu") == "2.13.0"


def test_compare_lists_what_differs_from_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / "constraints.txt"
    lock.write_text("# a comment\nnumpy==2.4.6\nonnx==1.23.2  # pinned\nonnxruntime-gpu==1.31.1\n")
    installed = {"numpy": "2.5.0", "onnx": "1.23.2", "narwhals": "2.29.0"}
    monkeypatch.setattr(pins, "installed", lambda: installed)
    assert pins.compare(lock) == (
        f"2 installed package(s) differ from {lock}:\n"
        "  narwhals    (not locked) -> 2.29.0\n"
        "  numpy              2.4.6 -> 2.5.0"
    )
    installed.update(numpy="2.4.6")
    del installed["narwhals"]
    assert pins.compare(lock) == f"Every installed package is at its version in {lock}."


def test_freeze_pins_the_twin_at_its_own_release_or_says_why_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pins, "installed", lambda: {"onnxruntime": "1.32.0", "onnx": "1.23.2"})
    releases = {"1.32.0": "1.31.1"}
    monkeypatch.setattr(pins, "twin_version", lambda package, wanted: releases.get(wanted))
    text = pins.freeze(["onnxruntime=onnxruntime-gpu"])
    assert text.splitlines()[4:] == [
        "# onnxruntime-gpu: 1.32.0 does not install here; locked at 1.31.1",
        "onnx==1.23.2",
        "onnxruntime==1.32.0",
        "onnxruntime-gpu==1.31.1",
    ]
    releases.clear()
    assert "# onnxruntime-gpu: no release installs here; not locked" in pins.freeze(
        ["onnxruntime=onnxruntime-gpu"]
    )
