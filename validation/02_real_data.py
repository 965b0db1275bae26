"""Validation 02: the fast path on every measured spectrum in ../shared/data.

For each file: the rows, the status counts, the median dE_b, R_OO, Ti3+ fraction (where the
rows hold Ti) and reduced chi^2, and the run's notes; a file that cannot be fitted is listed
with the reason it was refused.  Checks (issue 9):

- every O-K spectrum of the calibration set: dE_b of ``fit`` (row by row, median over the rows
  ``calibrate`` sums) equals ``calibrate``'s within 0.5 eV;
- no Ti3+ fraction reported for a material without Ti (CoO, LSMO rows, Fe/Cr oxides, YAG, ...);
- the pure-Ti4+ SrTiO3 spectra give f3 consistent with 0 (|f3| / err < 2);
- LSMO_STO_linescan: peak b of the SrTiO3 rows and of the LSMO rows within 1.5 eV;
- every file gives numbers or a flag / refusal that names its reason.

Writes ``validation/results/02_real_data/table.csv`` and ``report.json``.  The data never
enter the repository; without ../shared/data the script says so and exits 0.

Run: ``python validation/02_real_data.py``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sreels.errors import SreelsInputError  # noqa: E402
from sreels.inference.fast import fit_image, usable  # noqa: E402
from sreels.inference.load import load_measurement  # noqa: E402
from sreels.io import write_csv, write_json  # noqa: E402
from sreels.structures.measured import BUILTIN_SPECTRA, find_data_dir  # noqa: E402
from sreels.structures.okedge import measure_ok  # noqa: E402
from sreels.structures.spectra import load_spectrum  # noqa: E402

#: Every measured file of ../shared/data/README.md, with whether its material holds Ti
#: (None: rows differ, see ROWS_WITH_TI).
FILES = {
    "licensed/pyTEMlib/EELS_STO.dm3": True,
    "licensed/pyTEMlib/AL-DFoffset0.00.dm3": False,
    "licensed/pyEELSMODEL/hl.msa": True,
    "licensed/pyEELSMODEL/ll.msa": False,
    "licensed/pyEELSMODEL/testU.hspy": False,
    "licensed/rosettasciio/EELS_SI.dm4": False,
    "licensed/rosettasciio/test-EELS_spectrum.dm3": False,
    "licensed/nomad-parser-eelsdb/YAG_O-K_eelsdb21692.msa": False,
    "licensed/nomad-parser-eelsdb/BN-nanotube_lowloss_eelsdb21735.msa": False,
    "licensed/amorphous-ice/ice_HNO3_aligned_O.msa": False,
    "licensed/amorphous-ice/ice_HNO3_aligned_LL.msa": False,
    "internal-only/exspy-demos/LSMO_STO_linescan.hspy": None,
    "internal-only/exspy-demos/LSMO_STO_linescan_low_loss.hspy": False,
    "internal-only/exspy-demos/LSMO_linescan.hspy": False,
    "internal-only/exspy-demos/LSMO_linescan_low_loss.hspy": False,
    "internal-only/exspy-demos/CuZn_EELS_mapping_tutorial.hspy": False,
    "internal-only/practical_EELS_QEM/Beginner_core_loss.dm3": False,
    "internal-only/practical_EELS_QEM/Beginner_low_loss_LiK.dm4": False,
    "internal-only/practical_EELS_QEM/eelsdb_Cr2O3_alpha_O-K_Brydson158.msa": False,
    "internal-only/practical_EELS_QEM/lisp_core_loss.hspy": False,
    "internal-only/practical_EELS_QEM/low_loss_core_loss.hspy": False,
    "internal-only/tem-eels_Egerton/CoO.dat": False,
    "internal-only/Ti-Oxidation-EELS-data-processing/TiO2_TiL_SI_high-loss.dm4": True,
    "internal-only/Ti-Oxidation-EELS-data-processing/TiO2_TiL_SI_low-loss.dm4": False,
    "internal-only/Ti-Oxidation-EELS-data-processing/TiO2_CK-calib_SI_high-loss.dm4": False,
    "internal-only/Ti-Oxidation-EELS-data-processing/TiO2_CK-calib_SI_low-loss.dm4": False,
}
#: Line scans whose rows differ in material: the rows that hold Ti (README: LSMO_STO rows 0-2
#: SrTiO3, row 3 the interface, rows 4-9 La0.7Sr0.3MnO3).
ROWS_WITH_TI = {"internal-only/exspy-demos/LSMO_STO_linescan.hspy": (0, 1, 2, 3)}


def _med(v):
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def fit_file(ddir: Path, rel: str) -> dict:
    row = {"file": rel}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit_image(load_measurement([ddir / rel]), progress=False)
    except SreelsInputError as exc:
        return row | {"rows": 0, "refused": str(exc)}
    c, st = res.columns, res.status
    use = usable(st)
    use_o, use_ti = usable(st, "o"), usable(st, "ti")
    ti_rows = np.zeros(st.size, bool)
    has_ti = FILES[rel]
    if has_ti is None:
        ti_rows[list(ROWS_WITH_TI[rel])] = True
    elif has_ti:
        ti_rows[:] = True
    f3 = np.asarray(c["ti3_fraction_raw"] if "ti3_fraction_raw" in c else c["ti3_fraction"], float)
    row.update({
        "rows": int(st.size), "status": "; ".join(f"{k} x{v}" for k, v in zip(*np.unique(st, return_counts=True))),
        "usable": int(use.sum()),
        "delta_e_b_ev": _med(np.where(use_o, c.get("delta_e_b_ev", np.nan), np.nan)),
        "r_oo_nm": _med(np.where(use_o, c["r_oo_nm"], np.nan)),
        "r_oo_nm_err": _med(np.where(use_o, c["r_oo_nm_err"], np.nan)),
        "ti3_fraction": _med(np.where(use_ti, f3, np.nan)),
        "ti3_z_max": float(np.nanmax(np.abs(f3 / c["ti3_fraction_err"]))) if np.isfinite(f3).any() else float("nan"),
        "ti3_reported_without_ti": int((np.isfinite(f3) & ~ti_rows).sum()),
        "o_chi2_red": _med(c.get("o_chi2_red", np.nan)), "ti_chi2_red": _med(c.get("ti_chi2_red", np.nan)),
        "notes": " | ".join(res.notes),
    })
    if rel in ROWS_WITH_TI:
        b = np.asarray(c["peak_b_ev"], float)
        sto = _med(b[:3])
        lsmo = _med(b[4:])
        row["peak_b_sto_minus_lsmo_ev"] = sto - lsmo
    return row


def fit_of_rows(path: Path, rows) -> dict:
    """``fit`` on the file, row by row: the median dE_b over ``rows`` (all rows if None) that
    calibrate sums into one spectrum, and its standard error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_image(load_measurement([path]), progress=False)
    sel = np.zeros(res.status.size, bool)
    sel[list(rows) if rows else slice(None)] = True
    de = np.where(sel & usable(res.status, "o"), res.columns["delta_e_b_ev"], np.nan)
    err = np.where(np.isfinite(de), res.columns["delta_e_b_ev_err"], np.nan)
    n = int(np.isfinite(de).sum())
    return {"delta_e_b_ev": _med(de), "delta_e_b_ev_err": float(np.sqrt(np.nansum(err**2))) / n if n else float("nan"),
            "status": "; ".join(sorted(set(res.status[sel])))}


def main() -> int:
    ddir = find_data_dir(ROOT)
    out = ROOT / "validation" / "results" / "02_real_data"
    if ddir is None:
        print("../shared/data not found: nothing to validate")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    rows = [fit_file(ddir, rel) for rel in FILES if (ddir / rel).is_file()]
    comparisons = []
    for ent in BUILTIN_SPECTRA:
        p = ddir / ent.relpath
        if not p.is_file():
            continue
        spec = load_spectrum(p, rows=list(ent.rows) if ent.rows else None, name=ent.name)
        try:
            cal = measure_ok(spec, max_ev=ent.max_ev)
            cal_de = cal.delta_e_ev
        except SreelsInputError as exc:
            cal_de, why = float("nan"), str(exc)
        else:
            why = ""
        fit = fit_of_rows(p, ent.rows)
        comparisons.append({"spectrum": ent.name, "calibrate_delta_e_ev": cal_de, "fit_delta_e_ev": fit["delta_e_b_ev"],
                            "fit_err_ev": fit["delta_e_b_ev_err"], "fit_status": fit["status"], "calibrate_note": why})
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "file", k))
    write_csv(out / "table.csv", {k: np.array([r.get(k, "") for r in rows], dtype=object) for k in keys})
    checks = {
        "fit_vs_calibrate_within_0.5_ev": all(
            (np.isnan(x["calibrate_delta_e_ev"]) and np.isnan(x["fit_delta_e_ev"]))
            or abs(x["calibrate_delta_e_ev"] - x["fit_delta_e_ev"]) <= 0.5 for x in comparisons),
        "no_ti3_without_ti": all(r.get("ti3_reported_without_ti", 0) == 0 for r in rows),
        "srtio3_f3_consistent_with_0": all(r.get("ti3_z_max", 0) < 2 or not np.isfinite(r.get("ti3_z_max", 0))
                                           for r in rows if "STO" in r["file"] or r["file"].endswith("hl.msa")),
        "lsmo_sto_peak_b_within_1.5_ev": all(abs(r["peak_b_sto_minus_lsmo_ev"]) <= 1.5 for r in rows
                                             if "peak_b_sto_minus_lsmo_ev" in r),
        "every_file_numbers_or_reason": all(r.get("refused") or r.get("usable", 0) > 0 or r.get("status")
                                            for r in rows),
    }
    write_json(out / "report.json", {"files": rows, "fit_vs_calibrate": comparisons, "checks": checks})
    for r in rows:
        print(f"{r['file'][:60]:60s} rows {r.get('rows', 0):4d} usable {r.get('usable', 0):4d} "
              f"dE {r.get('delta_e_b_ev', float('nan')):6.2f} R {r.get('r_oo_nm', float('nan')):.4f} "
              f"f3 {r.get('ti3_fraction', float('nan')):6.3f}  {r.get('status', '') or r.get('refused', '')}"[:230])
    for x in comparisons:
        print(f"  {x['spectrum']:34s} calibrate {x['calibrate_delta_e_ev']:6.2f}  fit {x['fit_delta_e_ev']:6.2f} "
              f"± {x['fit_err_ev']:.2f}  {x['fit_status']}")
    for k, v in checks.items():
        print(f"{'PASS' if v else 'FAIL'}  {k}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
