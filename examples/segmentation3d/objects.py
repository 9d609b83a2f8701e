"""Object types made of labelled parts, in two families of four types and 11 part classes.

Each builder draws one object's proportions from a generator and returns one solid per
part, in the type's part order; where parts overlap, the earlier part owns the voxel.
Objects are built with z up inside about [-1, 1]^3. Thin parts are at least 0.07 thick
(half-size), so they survive voxelisation at 32^3 after scaling.

- ``shapes-a`` (the study's task): airplane (body, engine, tail, wing), chair (seat, back,
  leg), table (top, leg), mug (body, handle).
- ``shapes-b`` (the transfer source): lamp (shade, base, pole), rocket (body, nose, fin),
  guitar (body, neck, head), bottle (body, neck).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .shapes import Box, Cylinder, Ellipsoid, Solid, Torus, Union

Builder = Callable[[np.random.Generator], list[Solid]]


@dataclass(frozen=True)
class ObjectType:
    """One kind of object.

    Attributes:
        name: e.g. "chair".
        parts: Part names, in label order (an earlier part owns overlapping voxels).
        build: Draws one object: one solid per part.
    """

    name: str
    parts: tuple[str, ...]
    build: Builder


@dataclass(frozen=True)
class PartFamily:
    """A dataset's object types; part labels are numbered across types in this order.

    Attributes:
        name: e.g. "shapes-a".
        types: The object types.
    """

    name: str
    types: tuple[ObjectType, ...]

    @property
    def classes(self) -> int:
        """Number of part classes over all types."""
        return sum(len(kind.parts) for kind in self.types)

    def part_labels(self, type_index: int) -> tuple[int, ...]:
        """The global part labels of one object type."""
        start = sum(len(kind.parts) for kind in self.types[:type_index])
        return tuple(range(start, start + len(self.types[type_index].parts)))

    def class_names(self) -> tuple[str, ...]:
        """``type/part`` per global label."""
        return tuple(f"{kind.name}/{part}" for kind in self.types for part in kind.parts)


def _airplane(rng: np.random.Generator) -> list[Solid]:
    length, radius = rng.uniform(0.8, 0.95), rng.uniform(0.12, 0.16)
    wing_x = rng.uniform(-0.1, 0.15)
    span = rng.uniform(0.7, 0.95)
    body = Ellipsoid((0.0, 0.0, 0.0), (length, radius, radius))
    engine_y = rng.uniform(0.3, 0.5) * span
    engine_r = rng.uniform(0.07, 0.1)
    engines = Union(
        tuple(
            Cylinder(
                (wing_x + 0.1, side * engine_y, -radius), "x", engine_r, rng.uniform(0.12, 0.2)
            )
            for side in (-1.0, 1.0)
        )
    )
    fin_height = rng.uniform(0.2, 0.35)
    tail = Union(
        (
            Box((-length + 0.12, 0.0, radius + fin_height / 2), (0.1, 0.07, fin_height / 2)),
            Box((-length + 0.1, 0.0, 0.02), (0.08, rng.uniform(0.25, 0.35), 0.07)),
        )
    )
    wing = Box((wing_x, 0.0, 0.0), (rng.uniform(0.12, 0.2), span, 0.07))
    return [body, engines, tail, wing]


def _legs(half_x: float, half_y: float, top: float, bottom: float, thick: float) -> Union:
    height = (top - bottom) / 2
    return Union(
        tuple(
            Box(
                (sx * (half_x - thick), sy * (half_y - thick), bottom + height),
                (thick, thick, height),
            )
            for sx in (-1.0, 1.0)
            for sy in (-1.0, 1.0)
        )
    )


def _chair(rng: np.random.Generator) -> list[Solid]:
    seat_z = rng.uniform(-0.2, 0.05)
    half_x, half_y = rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.55)
    thick = rng.uniform(0.07, 0.09)
    seat = Box((0.0, 0.0, seat_z), (half_x, half_y, thick))
    back_height = rng.uniform(0.55, 0.8)
    back = Box((-half_x + 0.07, 0.0, seat_z + back_height / 2), (0.07, half_y, back_height / 2))
    legs = _legs(half_x, half_y, seat_z, -0.9, rng.uniform(0.07, 0.09))
    return [seat, back, legs]


def _table(rng: np.random.Generator) -> list[Solid]:
    top_z = rng.uniform(0.15, 0.4)
    half_x, half_y = rng.uniform(0.6, 0.9), rng.uniform(0.4, 0.7)
    top: Solid
    if rng.random() < 0.5:
        top = Box((0.0, 0.0, top_z), (half_x, half_y, rng.uniform(0.07, 0.09)))
        legs: Solid = _legs(half_x, half_y, top_z, -0.9, rng.uniform(0.07, 0.1))
    else:
        top = Cylinder((0.0, 0.0, top_z), "z", half_x, rng.uniform(0.07, 0.09))
        height = (top_z + 0.9) / 2
        legs = Union(
            (
                Cylinder((0.0, 0.0, top_z - height), "z", rng.uniform(0.08, 0.12), height),
                Cylinder((0.0, 0.0, -0.85), "z", rng.uniform(0.3, 0.45), 0.07),
            )
        )
    return [top, legs]


def _mug(rng: np.random.Generator) -> list[Solid]:
    radius, height = rng.uniform(0.4, 0.55), rng.uniform(0.45, 0.7)
    body = Union(
        (
            Cylinder((0.0, 0.0, 0.0), "z", radius, height, inner=0.75),
            Cylinder((0.0, 0.0, -height + 0.07), "z", radius, 0.07),
        )
    )
    handle = Torus((radius, 0.0, 0.0), "y", rng.uniform(0.22, 0.32), rng.uniform(0.07, 0.09), "x")
    return [body, handle]


def _lamp(rng: np.random.Generator) -> list[Solid]:
    shade_z, shade_half = rng.uniform(0.35, 0.55), rng.uniform(0.18, 0.28)
    shade = Cylinder(
        (0.0, 0.0, shade_z),
        "z",
        rng.uniform(0.35, 0.5),
        shade_half,
        end_radius=rng.uniform(0.15, 0.25),
        inner=0.75,
    )
    base = Cylinder((0.0, 0.0, -0.85), "z", rng.uniform(0.3, 0.45), rng.uniform(0.07, 0.09))
    pole_half = (shade_z + 0.85) / 2
    pole = Cylinder((0.0, 0.0, -0.85 + pole_half), "z", rng.uniform(0.07, 0.09), pole_half)
    return [shade, base, pole]


def _rocket(rng: np.random.Generator) -> list[Solid]:
    radius, half = rng.uniform(0.18, 0.26), rng.uniform(0.5, 0.65)
    center = rng.uniform(-0.25, -0.1)
    body = Cylinder((0.0, 0.0, center), "z", radius, half)
    nose_half = rng.uniform(0.15, 0.25)
    nose = Cylinder((0.0, 0.0, center + half + nose_half), "z", radius, nose_half, end_radius=0.0)
    fin_out, fin_half = rng.uniform(0.2, 0.3), rng.uniform(0.15, 0.25)
    count = int(rng.integers(3, 5))
    fins = []
    for k in range(count):
        angle = 2 * np.pi * k / count
        reach = radius + fin_out / 2
        center_xy = (reach * np.cos(angle), reach * np.sin(angle))
        along_x = abs(np.cos(angle)) > abs(np.sin(angle))
        halves = (fin_out / 2, 0.07, fin_half) if along_x else (0.07, fin_out / 2, fin_half)
        fins.append(Box((center_xy[0], center_xy[1], center - half + fin_half), halves))
    return [body, nose, Union(tuple(fins))]


def _guitar(rng: np.random.Generator) -> list[Solid]:
    lower, upper = rng.uniform(0.3, 0.4), rng.uniform(0.22, 0.3)
    depth = rng.uniform(0.1, 0.14)
    body = Union(
        (
            Ellipsoid((-0.5, 0.0, 0.0), (lower, lower, depth)),
            Ellipsoid((-0.5 + lower + upper * 0.6, 0.0, 0.0), (upper, upper, depth)),
        )
    )
    neck_start = -0.5 + lower + upper * 1.4
    head_half = rng.uniform(0.1, 0.14)
    neck_end = 0.95 - 2 * head_half
    neck = Box(((neck_start + neck_end) / 2, 0.0, 0.0), ((neck_end - neck_start) / 2, 0.07, 0.07))
    head = Box((neck_end + head_half, 0.0, 0.0), (head_half, rng.uniform(0.1, 0.14), 0.07))
    return [body, neck, head]


def _bottle(rng: np.random.Generator) -> list[Solid]:
    radius, half = rng.uniform(0.28, 0.4), rng.uniform(0.4, 0.55)
    center = rng.uniform(-0.4, -0.25)
    shoulder = rng.uniform(0.12, 0.2)
    neck_radius = rng.uniform(0.1, 0.14)
    body = Union(
        (
            Cylinder((0.0, 0.0, center), "z", radius, half),
            Cylinder(
                (0.0, 0.0, center + half + shoulder), "z", radius, shoulder, end_radius=neck_radius
            ),
        )
    )
    neck_half = rng.uniform(0.15, 0.25)
    neck_center = center + half + 2 * shoulder + neck_half
    neck = Cylinder((0.0, 0.0, neck_center), "z", neck_radius * 1.1, neck_half)
    return [body, neck]


FAMILIES: dict[str, PartFamily] = {
    "shapes-a": PartFamily(
        "shapes-a",
        (
            ObjectType("airplane", ("body", "engine", "tail", "wing"), _airplane),
            ObjectType("chair", ("seat", "back", "leg"), _chair),
            ObjectType("table", ("top", "leg"), _table),
            ObjectType("mug", ("body", "handle"), _mug),
        ),
    ),
    "shapes-b": PartFamily(
        "shapes-b",
        (
            ObjectType("lamp", ("shade", "base", "pole"), _lamp),
            ObjectType("rocket", ("body", "nose", "fin"), _rocket),
            ObjectType("guitar", ("body", "neck", "head"), _guitar),
            ObjectType("bottle", ("body", "neck"), _bottle),
        ),
    ),
}
