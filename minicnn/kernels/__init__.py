"""Stateless compute kernels: Numba fast paths with plain-loop references beside them."""
