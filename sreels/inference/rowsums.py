"""Sums over an image's rows that do not depend on how the rows are split or ordered.

A Dask fit (:mod:`.daskfit`) sums each block's rows and adds the blocks' sums; the in-memory fit sums the whole
image at once.  Floating-point sums in another order differ in their last bits, and those bits moved a few rows'
Levenberg-Marquardt stopping points (by up to 2e-4 of their error bars on a 64 x 64 map).  Here a sum over rows is
kept as three floating-point *components* whose exact sum is the rows' sum to ~2^-110 of the largest value
(:func:`row_sums`); components add (:func:`add_sums`) and round to one number (:func:`sum_value`) alike whatever the
blocks, so every path gets the same float64, except where the sum falls within ~2^-100 of its own rounding
boundary (a chance of ~1e-15 a number).

The split is the error-free extraction of Rump, Ogita & Oishi, "Accurate floating-point summation part I: faithful
rounding", SIAM J. Sci. Comput. 31, 189 (2008), Algorithm 3.2 (ExtractScalar): ``hi = (v + M) - M`` is ``v``
rounded to the grid of ``ulp(M)`` and ``v - hi`` is exact; with ``M`` above every row's ``|v|`` by the number of
rows, every partial sum of the ``hi`` is a multiple of that grid below 2^53 of it, so their sum is exact in any
order.  Two such levels leave a remainder ~2^-100 of the largest value, summed in floating point.
"""

from __future__ import annotations

import numpy as np

#: rows summed at a time (the grid's headroom is log2 of it: 11 bits of the 53)
PIECE_ROWS = 1024
#: components of a sum (the two exact levels and the remainder)
N_COMPONENTS = 3


def _level(v, e, bits):
    """``v`` (rows, ...) rounded to the grid ulp(1.5 * 2**(e + bits)) per column; ``v`` is overwritten with the
    remainder (exact)."""
    m = np.ldexp(1.5, e + bits)
    hi = v + m
    hi -= m
    v -= hi
    return hi, v


def _piece(v) -> np.ndarray:
    """The components (3, ...) of the sum over rows of ``v`` (at most PIECE_ROWS rows, finite, float64)."""
    bits = max(2, int(v.shape[0]).bit_length())      # rows < 2**bits
    amax = np.maximum(v.max(0), -v.min(0))
    e = np.frexp(amax)[1]                            # |v| < 2**e in every row
    hi, r = _level(np.array(v, dtype=float), e, bits)  # |r| <= 2**(e + bits - 53)
    mid, lo = _level(r, e + bits - 52, bits)         # |lo| <= 2**(e + 2 bits - 105)
    return np.stack([hi.sum(0), mid.sum(0), lo.sum(0)])


def row_sums(v) -> np.ndarray:
    """The components (3, ...) of the sum of ``v`` (rows, ...) over its rows (axis 0)."""
    v = np.asarray(v, dtype=float)
    if v.shape[0] == 0:
        return np.zeros((N_COMPONENTS,) + v.shape[1:])
    if v.shape[0] <= PIECE_ROWS:
        return _piece(v)
    parts = np.concatenate([_piece(v[i:i + PIECE_ROWS]) for i in range(0, v.shape[0], PIECE_ROWS)])
    return row_sums(parts)


def add_sums(parts) -> np.ndarray:
    """The components of several sums' sum (each (3, ...), e.g. blocks' :func:`row_sums`)."""
    return row_sums(np.concatenate(list(parts)))


def sum_value(c) -> np.ndarray:
    """The sum that components (3, ...) hold, as float64 (the two smaller added first)."""
    return c[0] + (c[1] + c[2])


def row_mean(v) -> np.ndarray:
    """The mean of ``v`` over its rows, the same whatever the rows' order or blocks (:func:`row_sums`)."""
    v = np.asarray(v, dtype=float)
    return sum_value(row_sums(v)) / max(v.shape[0], 1)
