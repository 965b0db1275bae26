"""Two-sided acceptance bands for pull statistics (issue 16).

A pull sd is tested against the chi-square interval of its sample (99.9 %, two-sided),
widened by a stated systematic allowance; a pull mean against 3.3 standard errors plus an
allowance.  Bands are never one-sided: errors 2x too small and 2x too large both fail.
"""

import numpy as np
from scipy import stats

#: Two-sided probability outside a band by chance alone.
ALPHA = 1e-3


def sd_band(dof: int, syst: float = 0.08) -> tuple:
    """(lo, hi) for the sample sd of ``dof`` unit-variance pulls, widened by ``syst`` (relative)."""
    lo = np.sqrt(stats.chi2.ppf(ALPHA / 2, dof) / dof)
    hi = np.sqrt(stats.chi2.ppf(1 - ALPHA / 2, dof) / dof)
    return lo * (1 - syst), hi * (1 + syst)


def mean_band(n: int, syst: float = 0.1) -> float:
    """Half-width for the mean of ``n`` unit-variance pulls."""
    return stats.norm.ppf(1 - ALPHA / 2) / np.sqrt(n) + syst


def check_pulls(z, what: str, syst_sd: float = 0.08, syst_mean: float = 0.1):
    """Assert that pulls ``z`` (finite values used) have mean ~ 0 and sd ~ 1, two-sided."""
    z = np.asarray(z, float)
    z = z[np.isfinite(z)]
    assert z.size >= 10, f"{what}: only {z.size} finite pulls"
    lo, hi = sd_band(z.size, syst_sd)
    sd = np.sqrt(np.mean(z**2) - np.mean(z) ** 2)
    assert lo < sd < hi, f"{what}: pull sd {sd:.3f} outside [{lo:.3f}, {hi:.3f}] (n = {z.size})"
    m = mean_band(z.size, syst_mean)
    assert abs(z.mean()) < m, f"{what}: pull mean {z.mean():+.3f} outside +-{m:.3f} (n = {z.size})"
    return z.mean(), sd


def check_ratio(ratio: float, dof: int, what: str, syst: float = 0.08):
    """Assert that an observed/reported sd ratio estimated with ``dof`` degrees of freedom is ~1."""
    lo, hi = sd_band(dof, syst)
    assert lo < ratio < hi, f"{what}: observed spread / reported error = {ratio:.3f} outside [{lo:.3f}, {hi:.3f}]"
