"""Energy and position axes (no I/O, no physics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SreelsInputError


@dataclass(frozen=True)
class EnergyAxis:
    """A uniform energy-loss axis.

    Parameters
    ----------
    offset_ev : float
        Energy loss of channel 0 (eV).
    scale_ev : float
        Dispersion (eV per channel), > 0.
    size : int
        Number of channels.
    """

    offset_ev: float
    scale_ev: float
    size: int

    def __post_init__(self):
        if not (np.isfinite(self.offset_ev) and np.isfinite(self.scale_ev)):
            raise SreelsInputError(
                f"energy axis offset/scale must be finite, got {self.offset_ev}, {self.scale_ev}"
            )
        if self.scale_ev <= 0:
            raise SreelsInputError(f"energy axis scale_ev must be > 0 eV/channel, got {self.scale_ev}")
        if int(self.size) != self.size or self.size < 2:
            raise SreelsInputError(f"energy axis size must be an integer >= 2, got {self.size}")

    @property
    def energy_ev(self) -> np.ndarray:
        """Channel centres (eV), shape (size,)."""
        return self.offset_ev + self.scale_ev * np.arange(self.size)

    @property
    def end_ev(self) -> float:
        """Energy of the last channel (eV)."""
        return self.offset_ev + self.scale_ev * (self.size - 1)

    def contains(self, lo_ev: float, hi_ev: float) -> bool:
        return self.offset_ev <= lo_ev and hi_ev <= self.end_ev

    def require(self, lo_ev: float, hi_ev: float, what: str) -> None:
        """Raise a clear error unless [lo_ev, hi_ev] lies inside the axis."""
        if not self.contains(lo_ev, hi_ev):
            raise SreelsInputError(
                f"{what} needs {lo_ev:.1f}-{hi_ev:.1f} eV but the energy axis covers "
                f"{self.offset_ev:.2f}-{self.end_ev:.2f} eV"
            )

    def index(self, energy_ev: float) -> int:
        """Nearest channel index of an energy (clipped to the axis)."""
        i = int(round((energy_ev - self.offset_ev) / self.scale_ev))
        return min(max(i, 0), self.size - 1)

    def slice(self, lo_ev: float, hi_ev: float) -> slice:
        """Channels with lo_ev <= E < hi_ev."""
        e = self.energy_ev
        i0 = int(np.searchsorted(e, lo_ev, side="left"))
        i1 = int(np.searchsorted(e, hi_ev, side="left"))
        return slice(i0, i1)


@dataclass(frozen=True)
class PositionAxis:
    """Row positions y along the slit (nm), y = 0 at the collector/electrode interface."""

    offset_nm: float
    scale_nm: float
    size: int

    def __post_init__(self):
        if self.scale_nm <= 0:
            raise SreelsInputError(f"position axis scale_nm must be > 0 nm/row, got {self.scale_nm}")
        if int(self.size) != self.size or self.size < 1:
            raise SreelsInputError(f"position axis size must be an integer >= 1, got {self.size}")

    @property
    def y_nm(self) -> np.ndarray:
        """Row centres (nm), shape (size,)."""
        return self.offset_nm + self.scale_nm * np.arange(self.size)
