"""minicnn: a readable convolutional-network engine in NumPy and Numba."""
__version__ = "0.1.0"
