"""Li content -> mean O-O distance R_OO, for the forward model.

``li_rel`` is the Li concentration relative to the parent electrolyte (parent = 1),
the quantity the study's Li-K profile gives (Yamamoto et al. 2014, Fig. 6a).

Models (:data:`MODELS`):

``"linear"``
    The study's empirical law (Yamamoto et al. 2014, Sect. 3.3 and Fig. 6b):
    R = 0.280 nm in the parent (li_rel = 1) rising linearly to ~0.310 nm at the
    maximum Li content of the electrode (li_rel = 8.5, Fig. 6a).  Parameters
    ``r_parent_nm=0.280, r_max_nm=0.310, li_max_rel=8.5`` can be overridden.
    Values outside [1, li_max_rel] are extrapolated linearly.

``"vegard"``
    Vegard-type interpolation of the mean TiO6 octahedral edge between the
    NASICON end members LiTi2(PO4)3 (x = 0) and Li3Ti2(PO4)3 (x = 2) in
    Li_{1+x}Ti2(PO4)3, with x = (li_rel - 1) * ``li_per_fu_parent`` (default 1 Li
    per formula unit in the parent, so li_rel = 3 is Li3Ti2(PO4)3).  Outside
    x in [0, 2] the straight line is extrapolated (no clipping): the study's
    electrode reaches li_rel ~ 8.5, far beyond Li3Ti2(PO4)3, where the law is an
    extrapolation and says so.  The end-member edges come from the built-in CIFs
    through :mod:`sreels.structures.oo` when those CIFs are present; otherwise
    from the values the study quotes (0.272 and 0.289 nm, derived by the authors
    from Delmas' group's positions with VESTA).  ``r_x0_nm`` / ``r_x2_nm``
    override them; ``source`` in :func:`vegard_endpoints` tells which was used.  The
    built-in end members are the computed ones (:mod:`.nasicon`, rescaled to the published
    LiTi2(PO4)3 cell).

``"structures"``
    R(x) of the computed Li(1+x)Ti2(PO4)3 series itself (:mod:`.nasicon`: CHGNet
    relaxations at x = 0 ... 3, rescaled to the published LiTi2(PO4)3 cell), piecewise
    linear in x and extrapolated beyond x = 3 along its last three points, with
    x = ``li_per_fu_parent`` * li_rel - 1.  ``li_per_fu_parent`` defaults to the parent
    LASGTP's 1.3 Li per formula unit (:mod:`sreels.forward.material`).  Its uncertainty:
    :func:`r_oo_err_nm_from_li`.
"""

from __future__ import annotations

import numpy as np

from ..errors import SreelsInputError

MODELS = ("linear", "vegard", "structures")

#: Yamamoto et al. (2014), Sect. 3.3: parent O-O distance and electrode maximum (nm).
R_PARENT_NM = 0.280
R_MAX_NM = 0.310
#: Yamamoto et al. (2014), Fig. 6(a): maximum Li concentration of the electrode (x parent).
LI_MAX_REL = 8.5
#: Yamamoto et al. (2014), Sect. 3.3: mean O-O of the octahedra in LiTi2(PO4)3 / Li3Ti2(PO4)3 (nm).
R_LITI2_STUDY_NM = 0.272
R_LI3TI2_STUDY_NM = 0.289


def vegard_endpoints(r_x0_nm: float | None = None, r_x2_nm: float | None = None) -> tuple[float, float, str]:
    """Mean TiO6 edges (nm) of LiTi2(PO4)3 and Li3Ti2(PO4)3 and where they came from."""
    if r_x0_nm is not None and r_x2_nm is not None:
        return float(r_x0_nm), float(r_x2_nm), "user"
    from . import nasicon

    if nasicon.available():
        r0, r2 = (float(v) for v in nasicon.r_oo_nm_from_x(np.array([0.0, 2.0]))[0])
        src = "computed structures (CHGNet, rescaled to the published LiTi2(PO4)3 cell)"
    else:
        r0, r2, src = R_LITI2_STUDY_NM, R_LI3TI2_STUDY_NM, "study (Yamamoto 2014, Sect. 3.3); NASICON CIFs absent"
    return (float(r_x0_nm) if r_x0_nm is not None else r0,
            float(r_x2_nm) if r_x2_nm is not None else r2, src)


def _linear(li, r_parent_nm=R_PARENT_NM, r_max_nm=R_MAX_NM, li_max_rel=LI_MAX_REL):
    if not li_max_rel > 1:
        raise SreelsInputError(f"li_max_rel must be > 1 (parent = 1), got {li_max_rel}")
    if not (r_parent_nm > 0 and r_max_nm > 0):
        raise SreelsInputError(f"r_parent_nm and r_max_nm must be > 0 nm, got {r_parent_nm}, {r_max_nm}")
    return r_parent_nm + (r_max_nm - r_parent_nm) * (li - 1.0) / (li_max_rel - 1.0)


def _vegard(li, li_per_fu_parent=1.0, r_x0_nm=None, r_x2_nm=None):
    if not li_per_fu_parent > 0:
        raise SreelsInputError(f"li_per_fu_parent must be > 0, got {li_per_fu_parent}")
    r0, r2, _ = vegard_endpoints(r_x0_nm, r_x2_nm)
    x = (li - 1.0) * li_per_fu_parent
    return r0 + (r2 - r0) * x / 2.0


def _li_per_fu_parent(li_per_fu_parent):
    if li_per_fu_parent is None:
        from ..forward.material import LASGTP_ATOMS_PER_FU
        return LASGTP_ATOMS_PER_FU["Li"]
    if not li_per_fu_parent > 0:
        raise SreelsInputError(f"li_per_fu_parent must be > 0, got {li_per_fu_parent}")
    return float(li_per_fu_parent)


def _structures(li, li_per_fu_parent=None):
    from . import nasicon

    if not nasicon.available():
        raise SreelsInputError("model 'structures' needs the computed NASICON structures (data/nasicon_series.json), "
                               "which are not installed; use model 'vegard'")
    return nasicon.r_oo_nm_from_x(_li_per_fu_parent(li_per_fu_parent) * li - 1.0)[0]


def r_oo_err_nm_from_li(li_rel, li_per_fu_parent=None):
    """Uncertainty (nm) of the ``"structures"`` model's R at ``li_rel`` (arrangement spread,
    the potential's compound-to-compound bias scatter and the published cell; :func:`.nasicon.budget`)."""
    from . import nasicon

    return nasicon.r_oo_nm_from_x(_li_per_fu_parent(li_per_fu_parent) * np.asarray(li_rel, float) - 1.0)[1]


def r_oo_nm_from_li(li_rel, model: str = "linear", **params):
    """Mean O-O distance R (nm) for relative Li content ``li_rel`` (parent = 1).

    Parameters
    ----------
    li_rel : array_like
        Li concentration relative to the parent electrolyte, >= 0; any shape.
    model : {"linear", "vegard", "structures"}
        See the module docstring.
    **params
        ``linear``: r_parent_nm, r_max_nm, li_max_rel.
        ``vegard``: li_per_fu_parent, r_x0_nm, r_x2_nm.
        ``structures``: li_per_fu_parent.

    Returns
    -------
    ndarray
        R in nm, same shape as ``li_rel``.

    Raises
    ------
    SreelsInputError
        Unknown model (the message lists :data:`MODELS`), unknown parameter,
        negative or non-finite ``li_rel``, or a resulting R <= 0.
    """
    if model not in MODELS:
        raise SreelsInputError(f"unknown R(c_Li) model {model!r}; valid models: {list(MODELS)}")
    li = np.asarray(li_rel, dtype=float)
    if np.any(~np.isfinite(li)) or np.any(li < 0):
        raise SreelsInputError(f"li_rel must be finite and >= 0 (parent = 1), got {li_rel!r}")
    allowed = {"linear": {"r_parent_nm", "r_max_nm", "li_max_rel"},
               "vegard": {"li_per_fu_parent", "r_x0_nm", "r_x2_nm"},
               "structures": {"li_per_fu_parent"}}[model]
    unknown = set(params) - allowed
    if unknown:
        raise SreelsInputError(f"model {model!r} takes parameters {sorted(allowed)}, got {sorted(unknown)}")
    r = {"linear": _linear, "vegard": _vegard, "structures": _structures}[model](li, **params)
    if np.any(r <= 0):
        raise SreelsInputError(f"model {model!r} gives R <= 0 nm for li_rel={li_rel!r} (extrapolated too far)")
    return r
