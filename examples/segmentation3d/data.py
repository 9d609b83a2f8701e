"""Voxel part segmentation in the spirit of ShapeNet parts, generated procedurally.

Each sample is one object of a :class:`~.objects.PartFamily` type, posed at random
(rotation about the vertical axis, a tilt of up to 20 degrees about the other two, scale
0.65 to 0.95, a shift of up to 0.08 of the half-width), voxelised on a ``size^3`` grid.
As in ShapeNet's voxelised point clouds only the object's surface is occupied: a voxel is
occupied if it is inside the object and one of its six neighbours is not. The input is
that occupancy (one channel, 0 or 1); labels are the global part class of each occupied
voxel and :data:`IGNORE_INDEX` (255, as in the reference ShapeNet setup) elsewhere.

Sample ``i`` of a split depends only on ``(seed, split, i)``; object types take turns
(sample ``i`` is type ``i mod types``), so every split is balanced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .objects import FAMILIES, PartFamily

#: Label of empty voxels, ignored by the loss and the metric.
IGNORE_INDEX = 255
_SPLITS = {"train": 0, "test": 1, "score": 2}


@dataclass(frozen=True)
class SegmentationSet:
    """Generated volumes.

    Attributes:
        inputs: Occupancy, float32 ``[N, 1, S, S, S]``.
        labels: Part class per voxel, int64 ``[N, S, S, S]``; 255 where empty.
        object_types: Type index per sample, ``[N]``.
        family: The family the samples come from.
    """

    inputs: np.ndarray
    labels: np.ndarray
    object_types: np.ndarray
    family: PartFamily


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation matrix ``Rz(yaw) Ry(pitch) Rx(roll)``."""
    cz, sz, cy, sy, cx, sx = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ ry @ rx


def voxel_centers(size: int) -> np.ndarray:
    """The ``[size^3, 3]`` voxel centres of ``[-1, 1]^3``, C order (x is the first axis)."""
    axis = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    return grid.reshape(-1, 3)


def surface(solid: np.ndarray) -> np.ndarray:
    """Voxels of a solid with at least one empty six-neighbour (outside the grid is empty)."""
    padded = np.pad(solid, 1)
    interior = solid.copy()
    for axis in range(3):
        for step in (-1, 1):
            interior &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return solid & ~interior


def draw_object(
    family: PartFamily, type_index: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Pose and voxelise one object: labels ``[size]*3`` (IGNORE_INDEX where empty)."""
    parts = family.types[type_index].build(rng)
    turn = rotation(rng.uniform(0, 2 * np.pi), rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35))
    scale = rng.uniform(0.65, 0.95)
    shift = rng.uniform(-0.08, 0.08, size=3)
    # World point p = scale * R q + shift, so q = R^T (p - shift) / scale (row vectors).
    points = (voxel_centers(size) - shift) @ turn / scale
    labels = np.full(points.shape[0], IGNORE_INDEX, dtype=np.int64)
    owned = np.zeros(points.shape[0], dtype=bool)
    for label, solid in zip(family.part_labels(type_index), parts):
        inside = solid.contains(points) & ~owned
        labels[inside] = label
        owned |= inside
    labels = labels.reshape(size, size, size)
    labels[~surface(owned.reshape(size, size, size))] = IGNORE_INDEX
    return labels


def generate(
    family: str, count: int, *, size: int = 32, seed: int = 0, split: str = "train"
) -> SegmentationSet:
    """Generate ``count`` samples of a family.

    Args:
        family: "shapes-a" or "shapes-b".
        count: Number of samples.
        size: Grid size per axis. Defaults to 32.
        seed: Dataset seed. Defaults to 0.
        split: "train", "test" or "score" (independent streams). Defaults to "train".

    Returns:
        The samples.
    """
    kinds = FAMILIES[family]
    labels = np.empty((count, size, size, size), dtype=np.int64)
    types = np.arange(count) % len(kinds.types)
    for index in range(count):
        rng = np.random.default_rng([seed, _SPLITS[split], index])
        labels[index] = draw_object(kinds, int(types[index]), size, rng)
    inputs = (labels != IGNORE_INDEX).astype(np.float32)[:, None]
    return SegmentationSet(inputs=inputs, labels=labels, object_types=types, family=kinds)


def main(argv: list[str] | None = None) -> None:
    """Write generated samples as an ``.npz`` of ``inputs`` and ``labels`` (``--data`` reads it)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--family", default="shapes-a", choices=sorted(FAMILIES))
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="score", choices=sorted(_SPLITS))
    parser.add_argument("-o", "--output", required=True)
    arguments = parser.parse_args(argv)
    samples = generate(
        arguments.family,
        arguments.count,
        size=arguments.size,
        seed=arguments.seed,
        split=arguments.split,
    )
    np.savez(arguments.output, inputs=samples.inputs, labels=samples.labels)
    volumes = f"{arguments.count} {arguments.family} volumes of {arguments.size}^3"
    print(f"wrote {arguments.output}: {volumes}")


if __name__ == "__main__":
    main()
