"""The O-K multiple-scattering resonance rule dE * R^2 = C.

Peak "b" of the O-K edge sits at E_b = E_th + C / R^2 (Yamamoto et al.,
J. Power Sources 266 (2014) 414, Eq. (1)), with the threshold E_th = 529.0 eV
and C = 2.820 eV nm^2 (R in nm) used in that study; the relation itself is
from Kurata et al., Phys. Rev. B 47 (1993) 13763 and Bianconi et al.,
Phys. Rev. B 32 (1985) 4292.
"""

from __future__ import annotations

import numpy as np

from ..errors import SreelsInputError

#: Threshold energy used by Yamamoto et al. (2014) for dE (eV).
THRESHOLD_EV = 529.0
#: Resonance constant of Yamamoto et al. (2014), derived in their Supplementary data 4 (eV nm^2).
C_EV_NM2 = 2.820


def energy_b_from_r(r_oo_nm, threshold_ev: float = THRESHOLD_EV, c_ev_nm2: float = C_EV_NM2):
    """Peak-"b" energy (eV) for an O-O distance ``r_oo_nm`` (nm): E_th + C / R^2."""
    r = np.asarray(r_oo_nm, dtype=float)
    if np.any(~np.isfinite(r)) or np.any(r <= 0):
        raise SreelsInputError(f"O-O distance must be finite and > 0 nm, got {r_oo_nm!r}")
    return threshold_ev + c_ev_nm2 / r**2


def r_from_energy_b(energy_b_ev, energy_b_err_ev=0.0, threshold_ev: float = THRESHOLD_EV,
                    threshold_err_ev: float = 0.0, c_ev_nm2: float = C_EV_NM2,
                    c_err_ev_nm2: float = 0.0):
    """O-O distance R = sqrt(C / (E_b - E_th)) (nm) with its propagated standard error.

    The errors of E_b, E_th and C are taken as independent:
    (sR/R)^2 = (sC / 2C)^2 + (s_dE / 2 dE)^2 with s_dE^2 = s_Eb^2 + s_Eth^2.
    Rows with E_b <= E_th give NaN (no physical R), never an exception, so that
    a spectrum image with a few failed rows still converts.
    """
    eb = np.asarray(energy_b_ev, dtype=float)
    de = eb - threshold_ev
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(de > 0, np.sqrt(c_ev_nm2 / np.where(de > 0, de, np.nan)), np.nan)
        s_de = np.hypot(np.asarray(energy_b_err_ev, dtype=float), threshold_err_ev)
        rel = np.hypot(c_err_ev_nm2 / (2 * c_ev_nm2), s_de / (2 * de))
    return r, r * rel


def _check_positive(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.size == 0 or np.any(~np.isfinite(arr)) or np.any(arr <= 0):
        raise SreelsInputError(f"{name} must be finite and > 0, got {value!r}")
    return arr


def delta_e_from_r(r_oo_nm, r_err_nm=0.0, c_ev_nm2: float = C_EV_NM2, c_err_ev_nm2: float = 0.0):
    """Resonance shift dE = C / R^2 (eV) above the threshold, with its standard error.

    Parameters
    ----------
    r_oo_nm : array_like
        O-O distance R (nm), > 0.
    r_err_nm, c_err_ev_nm2 : float or array_like
        Independent standard errors of R (nm) and C (eV nm^2).

    Returns
    -------
    delta_e_ev, delta_e_err_ev : ndarray
        (s_dE / dE)^2 = (s_C / C)^2 + (2 s_R / R)^2.
    """
    r = _check_positive("O-O distance R (nm)", r_oo_nm)
    _check_positive("C (eV nm^2)", c_ev_nm2)
    de = c_ev_nm2 / r**2
    rel = np.hypot(np.asarray(c_err_ev_nm2, float) / c_ev_nm2, 2 * np.asarray(r_err_nm, float) / r)
    return de, de * rel


def r_from_delta_e(delta_e_ev, delta_e_err_ev=0.0, c_ev_nm2: float = C_EV_NM2, c_err_ev_nm2: float = 0.0):
    """O-O distance R = sqrt(C / dE) (nm) from a measured shift dE > 0 (eV), with its error.

    Unlike :func:`r_from_energy_b`, bad input raises: dE <= 0 is not a resonance.
    (s_R / R)^2 = (s_C / 2C)^2 + (s_dE / 2 dE)^2.
    """
    de = _check_positive("resonance shift dE (eV)", delta_e_ev)
    _check_positive("C (eV nm^2)", c_ev_nm2)
    r = np.sqrt(c_ev_nm2 / de)
    rel = np.hypot(np.asarray(c_err_ev_nm2, float) / (2 * c_ev_nm2), np.asarray(delta_e_err_ev, float) / (2 * de))
    return r, r * rel


def r_from_shift(shift_ev, r_ref_nm: float, c_ev_nm2: float = C_EV_NM2):
    """R (nm) after peak "b" moves by ``shift_ev`` (eV, negative = to lower loss) from a
    reference state of distance ``r_ref_nm``: dE' = C / R_ref^2 + shift, R = sqrt(C / dE').

    This is how Yamamoto et al. (2014) turn the 5.5 and 1.4 eV shifts of peak "b"
    (relative to the parent at 0.280 nm) into O-O distances.
    """
    r_ref = _check_positive("reference R (nm)", r_ref_nm)
    de = c_ev_nm2 / r_ref**2 + np.asarray(shift_ev, float)
    return r_from_delta_e(de, c_ev_nm2=c_ev_nm2)[0]
