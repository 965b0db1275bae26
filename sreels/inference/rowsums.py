"""Sums over an image's rows that do not depend on how the rows are split or ordered.

A Dask fit (:mod:`.daskfit`) sums each block's rows and adds the blocks' sums; the in-memory fit sums the whole
image at once.  Floating-point sums in another order differ in their last bits, and those bits moved a few rows'
Levenberg-Marquardt stopping points (by up to 2e-4 of their error bars on a 64 x 64 map).  Here a sum over rows is
kept as three floating-point *components* whose exact sum is the rows' sum to ~2^-120 of the largest value
(:func:`row_sums`); components add (:func:`add_sums`) and round to one number (:func:`sum_value`) alike whatever the
blocks, so every path gets the same float64: the correctly rounded sum, except where the exact sum lies within
~2^-120 of the largest value from a rounding boundary (ties included; tests/inference/test_rowsums.py).

The split is the error-free extraction of Rump, Ogita & Oishi, "Accurate floating-point summation part I: faithful
rounding", SIAM J. Sci. Comput. 31, 189 (2008), Algorithm 3.2 (ExtractScalar): ``hi = (v + M) - M`` is ``v``
rounded to the grid of ``ulp(M)`` and ``v - hi`` is exact; with ``M`` above every row's ``|v|`` by the number of
rows, every partial sum of the ``hi`` is a multiple of that grid below 2^53 of it, so their sum is exact in any
order.  Two such levels leave a remainder ~2^-120 of the largest value (pieces of 64 rows), summed in floating point.
"""

from __future__ import annotations

import numpy as np

#: rows summed at a time: the grid's headroom is log2 of it (7 bits of the 53), and the piece's work arrays stay in
#: the processor's cache (18 ms for 1024 x 2048 values against 42 ms for the whole at once; numpy's own sum 1 ms)
PIECE_ROWS = 64
#: components of a sum (the two exact levels and the remainder)
N_COMPONENTS = 3


def _pieces(v, out) -> None:
    """The components of the sums over every PIECE_ROWS rows of ``v`` (rows, ...), into ``out`` (3 x pieces, ...)."""
    buf = np.empty((min(PIECE_ROWS, v.shape[0]),) + v.shape[1:])
    hi_buf, r_buf = buf, np.empty_like(buf)
    for j, i0 in enumerate(range(0, v.shape[0], PIECE_ROWS)):
        x = v[i0:i0 + PIECE_ROWS]
        hi, r = hi_buf[:x.shape[0]], r_buf[:x.shape[0]]
        bits = max(2, int(x.shape[0]).bit_length())     # rows < 2**bits
        e = np.frexp(np.maximum(x.max(0), -x.min(0)))[1]  # |x| < 2**e in every row
        m = np.ldexp(1.5, e + bits)                      # x + m: x on the grid ulp(m) = 2**(e + bits - 52)
        np.add(x, m, out=hi)
        hi -= m
        np.subtract(x, hi, out=r)                        # exact, |r| <= 2**(e + bits - 53)
        np.sum(hi, 0, out=out[3 * j])                    # exact: multiples of the grid below 2**52 of it
        m = np.ldexp(1.5, e + 2 * bits - 52)             # the same on r: |r - hi| <= 2**(e + 2 bits - 105)
        np.add(r, m, out=hi)
        hi -= m
        r -= hi
        np.sum(hi, 0, out=out[3 * j + 1])
        np.sum(r, 0, out=out[3 * j + 2])                 # rounded: <= 2**(e + 4 bits - 158) off


def row_sums(v) -> np.ndarray:
    """The components (3, ...) of the sum of ``v`` (rows, ...) over its rows (axis 0)."""
    v = np.asarray(v, dtype=float)
    if v.shape[0] == 0:
        return np.zeros((N_COMPONENTS,) + v.shape[1:])
    out = np.empty((N_COMPONENTS * -(-v.shape[0] // PIECE_ROWS),) + v.shape[1:])
    _pieces(v, out)
    return out if out.shape[0] == N_COMPONENTS else row_sums(out)


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
