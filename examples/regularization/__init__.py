"""Reproduction of Zhang et al. (ICIP 2019) on the moving-digits task."""
