"""Solid primitives in an object's canonical frame, for the voxel part-segmentation data.

Each primitive answers ``contains(points)`` for an ``[M, 3]`` array of (x, y, z)
coordinates (z up) with a boolean ``[M]`` mask. Objects are a list of labelled
primitives built in a box of about [-1, 1]^3 (see :mod:`.objects`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_AXES = {"x": 0, "y": 1, "z": 2}


class Solid:
    """A region of space."""

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Return True for the points inside."""
        raise NotImplementedError


@dataclass(frozen=True)
class Box(Solid):
    """An axis-aligned box: ``center`` and ``half`` sizes along x, y, z."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Inside the box."""
        return np.all(np.abs(points - np.asarray(self.center)) <= np.asarray(self.half), axis=1)


@dataclass(frozen=True)
class Ellipsoid(Solid):
    """An axis-aligned ellipsoid (a sphere when the radii are equal)."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Inside the ellipsoid."""
        scaled = (points - np.asarray(self.center)) / np.asarray(self.radii)
        return np.einsum("ij,ij->i", scaled, scaled) <= 1.0


@dataclass(frozen=True)
class Cylinder(Solid):
    """A frustum along an axis: radius ``radius`` at ``start``, ``end_radius`` at ``end``.

    ``end_radius`` None makes it a cylinder; 0 a cone. ``inner`` > 0 hollows it out to a
    tube of that fraction of the radius (open at both ends).
    """

    center: tuple[float, float, float]
    axis: str
    radius: float
    half_length: float
    end_radius: float | None = None
    inner: float = 0.0

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Inside the frustum (and outside its hollow)."""
        offset = points - np.asarray(self.center)
        along = offset[:, _AXES[self.axis]]
        across = np.delete(offset, _AXES[self.axis], axis=1)
        distance = np.sqrt(np.einsum("ij,ij->i", across, across))
        end = self.radius if self.end_radius is None else self.end_radius
        fraction = np.clip((along + self.half_length) / (2 * self.half_length), 0.0, 1.0)
        radius = self.radius + (end - self.radius) * fraction
        inside = (np.abs(along) <= self.half_length) & (distance <= radius)
        if self.inner > 0:
            inside &= distance >= self.inner * radius
        return inside


@dataclass(frozen=True)
class Torus(Solid):
    """A ring of tube radius ``tube`` around ``center``, in the plane normal to ``axis``.

    ``half_side`` keeps only the half with a positive coordinate along that axis of the
    plane ("x", "y" or "z"); None keeps the whole ring.
    """

    center: tuple[float, float, float]
    axis: str
    radius: float
    tube: float
    half_side: str | None = None

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Inside the ring."""
        offset = points - np.asarray(self.center)
        along = offset[:, _AXES[self.axis]]
        across = np.delete(offset, _AXES[self.axis], axis=1)
        ring = np.sqrt(np.einsum("ij,ij->i", across, across)) - self.radius
        inside = ring**2 + along**2 <= self.tube**2
        if self.half_side is not None:
            inside &= offset[:, _AXES[self.half_side]] >= 0
        return inside


@dataclass(frozen=True)
class Union(Solid):
    """Several solids as one."""

    parts: tuple[Solid, ...]

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Inside any of them."""
        inside = np.zeros(len(points), dtype=bool)
        for part in self.parts:
            inside |= part.contains(points)
        return inside
