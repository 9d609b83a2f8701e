"""Torch kernels the op rules share: attributes, padding, windows, interpolation, slices."""
