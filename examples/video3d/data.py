"""Clips of real handwritten digits moving along class-dependent trajectories.

The digits are scikit-learn's bundled 8x8 images (``sklearn.datasets.load_digits``, 1797
images, nothing downloaded). A clip of class ``k`` shows one image of digit ``k`` (grey
levels 0..16 scaled to 0..1) moving through ``frames`` frames of ``size x size`` along
trajectory ``k`` of :data:`TRAJECTORIES`, with a random start, speed or phase, and
Gaussian pixel noise. Both the digit's shape and its motion carry the class; two pairs of
classes (the circles, and the two verticals) move along the same path in opposite
directions, so the order of frames matters.

The digit images are split once (seeded permutation, 70% train): train and test clips
never share an image. Clip ``i`` of a split depends only on ``(seed, split, i)``; classes
take turns (clip ``i`` is class ``i mod 10``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DIGIT = 8
CLASSES = 10
#: What each class's digit does, by class index.
TRAJECTORIES = (
    "circle clockwise",
    "circle counter-clockwise",
    "left to right",
    "right to left",
    "top to bottom",
    "bottom to top",
    "diagonal down-right",
    "diagonal up-right",
    "bounce up and down",
    "zigzag left to right",
)
_SPLITS = {"train": 0, "test": 1, "score": 2}
TRAIN_FRACTION = 0.7
NOISE = 0.3


@dataclass(frozen=True)
class ClipSet:
    """Generated clips.

    Attributes:
        inputs: float32 ``[N, 1, frames, size, size]``.
        labels: int64 class per clip ``[N]``.
        positions: float ``[N, frames, 2]``: the digit's top-left corner (row, column) per
            frame, before rounding to whole pixels.
    """

    inputs: np.ndarray
    labels: np.ndarray
    positions: np.ndarray


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


def digit_pool(split: str, seed: int = 0) -> dict[int, np.ndarray]:
    """Indices of the digit images of a split, per class.

    "train" and "score" draw from the same 70% of the images, "test" from the rest.
    """
    images, targets = _digits()
    order = np.random.default_rng([seed, 99]).permutation(len(images))
    cut = int(TRAIN_FRACTION * len(images))
    chosen = order[cut:] if split == "test" else order[:cut]
    return {k: np.sort(chosen[targets[chosen] == k]) for k in range(CLASSES)}


def trajectory(label: int, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Top-left corners ``[frames, 2]`` (row, column) of the digit for class ``label``."""
    room = size - DIGIT
    t = np.linspace(0.0, 1.0, frames)
    middle = room / 2
    start = rng.uniform(0.0, 0.25 * room)
    travel = rng.uniform(0.6, 0.75) * room
    across = rng.uniform(0.2 * room, 0.8 * room)
    forward = start + travel * t
    kind = TRAJECTORIES[label]
    if kind.startswith("circle"):
        radius = rng.uniform(0.25, 0.4) * room
        sign = -1.0 if kind == "circle clockwise" else 1.0
        angle = rng.uniform(0, 2 * np.pi) + sign * 2 * np.pi * rng.uniform(0.7, 0.9) * t
        # Rows grow downwards, so a positive angle turns counter-clockwise on screen.
        rows, cols = middle - radius * np.sin(angle), middle + radius * np.cos(angle)
    elif kind == "left to right":
        rows, cols = np.full(frames, across), forward
    elif kind == "right to left":
        rows, cols = np.full(frames, across), room - forward
    elif kind == "top to bottom":
        rows, cols = forward, np.full(frames, across)
    elif kind == "bottom to top":
        rows, cols = room - forward, np.full(frames, across)
    elif kind == "diagonal down-right":
        rows, cols = forward, forward
    elif kind == "diagonal up-right":
        rows, cols = room - forward, forward
    elif kind == "bounce up and down":
        phase = rng.uniform(0, 2 * np.pi)
        rows = middle + 0.4 * room * np.sin(phase + 4 * np.pi * t)
        cols = np.full(frames, across)
    else:  # zigzag left to right
        phase = rng.uniform(0, 2 * np.pi)
        rows, cols = middle + 0.3 * room * np.sin(phase + 6 * np.pi * t), forward
    return np.clip(np.stack([rows, cols], axis=1), 0.0, room)


def generate(
    count: int,
    *,
    frames: int = 16,
    size: int = 32,
    seed: int = 0,
    split: str = "train",
    noise: float | None = None,
) -> ClipSet:
    """Generate ``count`` clips.

    Args:
        count: Number of clips.
        frames: Frames per clip. Defaults to 16.
        size: Frame height and width. Defaults to 32.
        seed: Dataset seed (also splits the digit images). Defaults to 0.
        split: "train", "test" or "score". Defaults to "train".
        noise: Standard deviation of the Gaussian pixel noise. Defaults to NOISE.

    Returns:
        The clips.
    """
    images, _ = _digits()
    pool = digit_pool(split, seed)
    sigma = NOISE if noise is None else noise
    inputs = np.zeros((count, 1, frames, size, size), dtype=np.float32)
    labels = np.arange(count, dtype=np.int64) % CLASSES
    positions = np.empty((count, frames, 2))
    for index in range(count):
        rng = np.random.default_rng([seed, _SPLITS[split], index])
        label = int(labels[index])
        image = images[rng.choice(pool[label])] * rng.uniform(0.7, 1.0)
        positions[index] = trajectory(label, frames, size, rng)
        for frame, (row, col) in enumerate(np.rint(positions[index]).astype(int)):
            inputs[index, 0, frame, row : row + DIGIT, col : col + DIGIT] = image
        inputs[index] += rng.normal(0.0, sigma, size=inputs[index].shape).astype(np.float32)
    return ClipSet(inputs=inputs, labels=labels, positions=positions)
