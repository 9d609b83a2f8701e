"""Voxel part segmentation (ShapeNet-parts style), generated procedurally."""
