"""Validation 17: the fast path on the study's interface recorded with other instruments and specimens.

The tests and the pull studies use the default instrument (0.1 eV per channel, 0.5 eV ZLP, 300 kV, DualEELS);
users bring others.  Each variant below changes one thing of the default (scenario, instrument or detector), is
simulated with seeds 700-702 and fitted with ``fit_image``; reported: rows usable per edge, the per-row pulls
(estimate - truth) / error of c_Li, the Ti3+ fraction and R_OO over the usable rows, the six derived numbers'
pulls per seed, and the commonest status flags.  Honest errors give per-row pulls of mean 0 and sd 1; a number
the model cannot give must be withheld or flagged (validation/results/17_instrument_variants/).

Run: ``python validation/17_instrument_variants.py [VARIANT ...]`` (all by default; ~10 s per variant on 2 cores).
"""

from __future__ import annotations

import collections
import dataclasses as dc
import json
import sys
import time
from pathlib import Path

import numpy as np

from sreels.config import LOWLOSS_NAME, Detector, Instrument, Scenario
from sreels.forward.simulate import simulate
from sreels.inference.derived import KEYS, derive, derived_truth
from sreels.inference.fast import fit_image, usable, usable_by_edge
from sreels.inference.load import WindowData

OUT = Path(__file__).parent / "results" / "17_instrument_variants"
SEEDS = (700, 701, 702)
S, I, D = Scenario(), Instrument(), Detector()


def _dispersion(de: float, lowloss_channels: int | None = None) -> Instrument:
    """Both core-loss windows (and the low loss, which shares their dispersion) at ``de`` eV per channel over the
    default's ~205 eV; the low loss over ``lowloss_channels`` (default 2048: to ~500 eV at 0.25 eV)."""
    n = int(round(204.8 / de))
    return dc.replace(I, lowloss_channels=lowloss_channels or I.lowloss_channels,
                      windows=tuple(dc.replace(w, channels=n, scale_ev=de) for w in I.windows))


VARIANTS = {
    "default": (S, I, D),
    "beam 200 kV, 20 mrad": (S, dc.replace(I, beam_energy_kev=200.0, collection_semiangle_mrad=20.0), D),
    "beam 80 kV": (S, dc.replace(I, beam_energy_kev=80.0), D),
    "ZLP 1.0 eV": (S, dc.replace(I, resolution_fwhm_ev=1.0), D),
    "ZLP 1.5 eV": (S, dc.replace(I, resolution_fwhm_ev=1.5), D),
    "ZLP 2.0 eV": (S, dc.replace(I, resolution_fwhm_ev=2.0), D),
    "ZLP tail 0.1 eV (cold FEG)": (S, dc.replace(I, zlp_tail_ev=0.1), D),
    "0.05 eV/channel": (S, _dispersion(0.05), D),
    "0.25 eV/channel, low loss to 195 eV": (S, _dispersion(0.25, 820), D),
    "0.25 eV/channel, low loss to 502 eV": (S, _dispersion(0.25), D),
    "0.25 eV/channel, ZLP 1.0 eV": (S, dc.replace(_dispersion(0.25), resolution_fwhm_ev=1.0), D),
    "drift 4 eV": (S, dc.replace(I, drift_ev=4.0), D),
    "SR distortion 0.5 eV": (S, dc.replace(I, energy_distortion_ev=0.5), D),
    "low-loss exposure / 4": (S, dc.replace(I, lowloss_exposure_s=0.0005), D),
    "low-loss exposure x 4 (ZLP saturated)": (S, dc.replace(I, lowloss_exposure_s=0.008), D),
    "no low-loss window": (S, dc.replace(I, lowloss_window=False), D),
    "one plasmon 22 eV, lambda 120 nm": (S, dc.replace(I, plasmon_ev=22.0, inelastic_mfp_nm=120.0), D),
    "dose / 5": (S, dc.replace(I, dose_e_per_row_s=1.2e7), D),
    "thickness 40 nm": (dc.replace(S, thickness_nm=40.0), I, D),
    "thickness 200 nm": (dc.replace(S, thickness_nm=200.0), I, D),
    "thickness +40 % per um": (dc.replace(S, thickness_slope_per_um=0.4), I, D),
    "c_Li max 4, electrode 250 nm": (dc.replace(S, li_max_rel=4.0, electrode_width_nm=250.0,
                                                ti3_li_threshold_rel=3.0), I, D),
    "no AlPO4 grains": (dc.replace(S, grains=()), I, D),
    "readout noise 10 counts": (S, I, dc.replace(D, readout_noise_counts=10.0)),
    "gain non-uniformity 1 %": (S, I, dc.replace(D, gain_nonuniformity_rel=0.01)),
}


def windows_of(sim) -> dict:
    """The simulation as ``sreels fit`` reads its files: the detector and each window's exposure in the metadata."""
    det, inst = sim.config.detector, sim.config.instrument

    def md(name):
        exposure = inst.lowloss_exposure_s if name == LOWLOSS_NAME else inst.window(name).exposure_s
        return {"sreels": {"detector": dc.asdict(det), "exposure_s": exposure,
                           "instrument": {"plural_scattering": inst.plural_scattering}}}

    return {k: WindowData(k, v.energy, v.counts.astype(float), sim.position, "sim", det.gain_counts_per_e,
                          det.readout_noise_counts, metadata=md(k)) for k, v in sim.windows.items()}


def run(name: str) -> dict:
    sc, inst, det = VARIANTS[name]
    pulls = {"c_Li": [], "Ti3+": [], "R_OO": []}
    derived = {k: [] for k in KEYS}
    usable_rows, flags = [], collections.Counter()
    t0 = time.perf_counter()
    for seed in SEEDS:
        sim = simulate(sc, inst, det, rng=seed)
        res = fit_image(windows_of(sim), progress=False)
        t, c = sim.truth_columns(), res.columns
        for key, col, tcol, edge in (("c_Li", "li_rel", "li_rel_row", "li"),
                                     ("Ti3+", "ti3_fraction_raw", "ti3_fraction_row", "ti"),
                                     ("R_OO", "r_oo_nm", "r_oo_nm_row", "o")):
            z = (c[col] - t[tcol]) / c[col.replace("_raw", "") + "_err"]
            pulls[key].append(z[usable(res.status, edge) & np.isfinite(z)])
        ub = usable_by_edge(res.status)
        usable_rows.append({k: int(v.sum()) for k, v in ub.items()})
        d, tr = derive(res.position.y_nm, c, ub), derived_truth(sim)
        for k in KEYS:
            derived[k].append(float((d[k] - tr[k]) / d[f"{k}_err"]) if np.isfinite(d.get(k, np.nan)) else None)
        for s in res.status:
            for f in str(s).split("|"):
                flags[f] += 1
    out = {"variant": name, "seeds": list(SEEDS), "rows": int(sc.rows), "usable_rows": usable_rows,
           "seconds": round(time.perf_counter() - t0, 1), "flags": dict(flags.most_common(6)), "derived_pulls": derived}
    for k, v in pulls.items():
        z = np.concatenate(v)
        out[f"{k}_pulls"] = {"n": int(z.size), "mean": round(float(z.mean()), 3) if z.size else None,
                             "sd": round(float(z.std()), 3) if z.size else None}
    return out


def _fmt(r: dict) -> str:
    p = " | ".join(f"{k} {r[f'{k}_pulls']['mean']:+.2f} / {r[f'{k}_pulls']['sd']:.2f}" if r[f"{k}_pulls"]["n"]
                   else f"{k} withheld" for k in ("c_Li", "Ti3+", "R_OO"))
    d = ", ".join(f"{k} " + " ".join("n/a" if z is None else f"{z:+.1f}" for z in v) for k, v in r["derived_pulls"].items())
    u = "/".join(str(min(x[e] for x in r["usable_rows"])) for e in ("li", "ti", "o"))
    return f"| {r['variant']} | {u} | {p} | {d} | {', '.join(f'{k} {v}' for k, v in r['flags'].items())} |"


def main(argv) -> int:
    names = argv or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print(f"unknown variant(s) {unknown}; expected any of {list(VARIANTS)}", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for n in names:
        results.append(run(n))
        print(_fmt(results[-1]), flush=True)
    if argv:  # a subset: printed only
        return 0
    tmp = OUT / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(OUT / "results.json")
    head = ("| variant | usable rows (min over seeds) Li/Ti/O | per-row pulls mean / sd | derived numbers' pulls "
            "(seeds 700, 701, 702) | commonest flags (rows, 3 images) |\n|---|---|---|---|---|\n")
    tmp = OUT / "results.md.tmp"
    tmp.write_text(f"# Validation 17: instrument and specimen variants (fast path)\n\n{len(SEEDS)} seeds x "
                   f"{results[0]['rows']} rows each.\n\n" + head + "\n".join(_fmt(r) for r in results) + "\n")
    tmp.replace(OUT / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
