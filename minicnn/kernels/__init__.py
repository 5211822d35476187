"""Stateless compute kernels: Numba fast paths with plain-loop references beside them.

Threads. The parallel kernels run on Numba's OpenMP threading layer, and the GEMMs of the conv
kernels on NumPy's BLAS (OpenBLAS), which has its own thread pool. By default GNU OpenMP threads
*spin* while they wait for work, so each pool's idle threads steal the cores the other pool is
computing on: on 2 cores DenseNet121 ran 7x slower. ``OMP_WAIT_POLICY=PASSIVE`` makes idle OpenMP
threads sleep instead (measured: same speed as single-threaded BLAS, without giving BLAS up). It
is set here, before Numba starts its threads, unless the user has set it; it must be in the
environment before the OpenMP runtime loads, so set it yourself if you load OpenMP earlier.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
