"""Stateless compute kernels: Numba fast paths with plain-loop references beside them.

Threads. The parallel kernels run on Numba's OpenMP threading layer and call BLAS from those
threads, one single-threaded GEMM each (``minicnn.kernels.threads``). How idle OpenMP threads wait
decides the speed of small workloads. GNU OpenMP's default lets them spin for 300,000 iterations
(milliseconds) after every parallel region, stealing the cores from anything else that runs then
(with BLAS threads competing, DenseNet121 once ran 7x slower). ``OMP_WAIT_POLICY=PASSIVE`` makes
them sleep at once, but then every parallel region starts by waking them (tens of microseconds):
a batch-1 DenseNet121 pass runs ~360 regions, and spent a third of its time waiting (0.130 s
passive, 0.080 s with a short spin; batch 8: 0.82 s vs 0.68 s, measured on 2 cores).
So unless the user has set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, a short spin
(``GOMP_SPINCOUNT=10000``, well under a millisecond) is set here, before Numba starts its
threads; the OpenMP runtime reads it when it loads, so set it yourself if you load OpenMP earlier.
"""
import os

# what this module added to the environment (benchmarks give PyTorch's OpenMP its own defaults)
ENV_SET = {}
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    ENV_SET["GOMP_SPINCOUNT"] = os.environ["GOMP_SPINCOUNT"] = "10000"
