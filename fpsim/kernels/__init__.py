"""Numba kernels. Everything here is an implementation detail of the public API."""
