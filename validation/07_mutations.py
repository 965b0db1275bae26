"""Validation 07: a curated mutation test of the error model (issue 16).

Usage:  python validation/07_mutations.py [--only ID ...] [--check] [--slow] [--timeout S]
                                          [--out DIR]   (default validation/results/07_mutations)

Each mutation is one small, realistic physics or statistics bug: (file, exact old text, new
text).  For each, the package and its tests are copied to a temporary folder, the text is
replaced there (never in this working tree), and only the tests relevant to that mutation
run (``pytest -x``; the default, non-slow subset unless ``--slow``).  A mutation is
*killed* when a test fails, *survived* when all pass.  A pattern that no longer matches
exactly once is reported as ``pattern_not_found`` / ``pattern_ambiguous`` and not run:
the code changed under the list, which must then be refreshed (the fast path is being
rewritten).  The unmutated copy is run first on the union of all selected tests; if it fails,
nothing else runs.

Writes OUT_DIR/kill_table.md and OUT_DIR/kill_table.json.  Runs on the measured-data-free
copy: tests that need ../shared/data skip there, so no kill depends on that data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Test subsets, cheapest and most relevant first (pytest -x stops at the first failure).
FAST = ["tests/statistics/test_fast_pulls.py", "tests/inference/test_fast_accuracy.py"]
FAST_DEF = ["tests/statistics/test_definitions.py"]
DERIVED = ["tests/statistics/test_propagation.py", "tests/inference/test_fast_accuracy.py"]
BAYES = ["tests/bayes/test_error_bars.py", "tests/bayes/test_fit.py"]
DETECTOR = ["tests/forward/test_detector.py"]
FORWARD = ["tests/forward/test_shapes.py", "tests/forward/test_physics.py", "tests/forward/test_crosssections.py"]
STRUCT = ["tests/structures/test_oo.py", "tests/statistics/test_definitions.py"]
CALIB = ["tests/structures/test_calibration.py", "tests/structures/test_resonance.py",
         "tests/statistics/test_definitions.py", "tests/statistics/test_propagation.py"]


@dataclass(frozen=True)
class Mutation:
    id: str
    area: str
    file: str
    old: str
    new: str
    tests: tuple
    what: str
    origin: str = "issue 16"   # "issue 16 (survivor)" for the five survivors the issue lists


M = Mutation
MUTATIONS = [
    # ----------------------------------------------------------- the five survivors
    M("I1", "fast path", "sreels/inference/edgefits.py",
      "return gain * np.maximum(sm, 1.0) + readout**2", "return gain * np.maximum(sm, 1.0)",
      tuple(FAST), "readout noise dropped from the per-pixel variance model", "issue 16 (survivor)"),
    M("I2", "fast path", "sreels/inference/fast.py",
      '"li_rel_err": np.where(valid, np.hypot(q_err / qm, q * qm_err / qm**2), np.nan)',
      '"li_rel_err": np.where(valid, 0.5 * np.hypot(q_err / qm, q * qm_err / qm**2), np.nan)',
      tuple(FAST), "reported li_rel_err halved", "issue 16 (survivor)"),
    M("I3", "fast path", "sreels/inference/fast.py",
      "return np.mean(v), np.sqrt(np.sum(err**2)) / v.size",
      "return np.mean(v), np.sqrt(np.sum(err**2)) / np.sqrt(v.size)",
      tuple(FAST), "standard error of the parent mean with sqrt(N) instead of N", "issue 16 (survivor)"),
    M("I4", "bayes", "sreels/inference/bayes/results.py",
      'out[f"{k}_err"] = 0.5 * (s["p84"] - s["p16"])', 'out[f"{k}_err"] = 0.25 * (s["p84"] - s["p16"])',
      tuple(BAYES), "summary <number>_err = half the posterior sd", "issue 16 (survivor)"),
    M("I5", "bayes", "sreels/inference/bayes/data.py",
      "var = tuple(np.maximum(e, 1.0) + w.readout_var for e, w in zip(expected, self.windows))",
      "var = tuple(np.maximum(e, 1.0) for e, w in zip(expected, self.windows))",
      tuple(BAYES), "readout term left out of the likelihood's variance", "issue 16 (survivor)"),
    # ----------------------------------------------------------- the two accidental kills
    M("I6", "structures", "sreels/structures/measured.py",
      'r = oo.oo_octahedral_edge_nm if definition == "octahedral_edge" else oo.oo_nearest_nm',
      'r = oo.oo_nearest_nm if definition == "octahedral_edge" else oo.oo_octahedral_edge_nm',
      tuple(STRUCT), "O-O definitions swapped in the calibration"),
    M("I7", "fast path", "sreels/inference/fast.py",
      '"ti3_fraction": np.where(keep, np.clip(f3, 0, 1), np.nan)',
      '"ti3_fraction": np.where(keep, np.clip(f3, 0, 0.9), np.nan)',
      tuple(FAST_DEF + FAST), "Ti3+ fraction clipped at 0.9"),
    # ----------------------------------------------------------- detector
    M("D1", "detector", "sreels/forward/detector.py",
      "raw += det.readout_noise_counts * rng.standard_normal(",
      "raw += 0.5 * det.readout_noise_counts * rng.standard_normal(",
      tuple(DETECTOR), "simulated readout noise half the stated value"),
    M("D2", "detector", "sreels/forward/detector.py",
      "signal = apply_psf(rng.poisson(lam) * det.gain_counts_per_e, det.psf_decay)",
      "signal = apply_psf(rng.poisson(lam * det.gain_counts_per_e) * 1.0, det.psf_decay)",
      tuple(DETECTOR), "Poisson drawn on counts instead of electrons (variance g*mean, not g^2*lambda)"),
    M("D3", "detector", "sreels/forward/detector.py",
      "    return float(np.sum(k**2))", "    return float(np.sum(k) ** 2)",
      tuple(DETECTOR + BAYES), "PSF variance factor sum(k^2) replaced by (sum k)^2 = 1"),
    M("D4", "detector", "sreels/forward/detector.py",
      "np.rint(raw, out=raw)", "np.floor(raw, out=raw)",
      tuple(DETECTOR), "quantisation truncates (biased by -0.5 count) instead of rounding"),
    M("D5", "detector", "sreels/forward/detector.py",
      "    return k / k.sum()", "    return k / k.max()",
      tuple(DETECTOR), "PSF kernel not normalised to unit sum (counts not conserved)"),
    # ----------------------------------------------------------- forward model
    M("F1", "forward", "sreels/forward/edges.py",
      "TI3_SHIFT_EV = -1.7", "TI3_SHIFT_EV = -1.2",
      tuple(FORWARD), "Ti3+ chemical shift -1.2 eV instead of the study's -1.7 eV"),
    M("F2", "forward", "sreels/forward/edges.py",
      "FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))", "FWHM_TO_SIGMA = 1.0 / (2.0 * np.log(2.0))",
      tuple(FORWARD), "wrong FWHM -> sigma conversion of every Gaussian"),
    M("F3", "forward", "sreels/forward/simulate.py",
      '"r_oo_nm_row": np.sqrt(2.820 / (eb - 529.0))', '"r_oo_nm_row": np.sqrt(2.820 / (eb - 528.5))',
      tuple(FAST), "the row truth of R_OO uses a threshold 0.5 eV off"),
    M("F4", "forward", "sreels/forward/instrument.py",
      "sd = fwhm_nm * FWHM_TO_SIGMA / row_nm", "sd = fwhm_nm / row_nm",
      tuple(["tests/forward/test_shapes.py"] + FAST), "spatial blur sd taken as its FWHM"),
    M("F5", "forward", "sreels/forward/edges.py",
      "return cont * rounded_step(e, 59.0, 0.6) + gaussian(e, 61.8, 2.5, area=1.2 * ref * 2.5)",
      "return cont * rounded_step(e, 59.0, 0.6) + gaussian(e, 60.8, 2.5, area=1.2 * ref * 2.5)",
      tuple(FORWARD), "Li-K main peak at 60.8 eV instead of the measured 61.8 eV"),
    # ----------------------------------------------------------- fast path (own)
    M("P1", "fast path", "sreels/inference/fast.py",
      "f3_err = np.sqrt(np.clip(a4**2 * v3 + a3**2 * v4 - 2 * a3 * a4 * c43, 0, None)) / n_ti**2",
      "f3_err = np.sqrt(np.clip(a4**2 * v3 + a3**2 * v4, 0, None)) / n_ti**2",
      tuple(FAST), "Ti3+ fraction error without the Ti4+/Ti3+ amplitude covariance"),
    M("P2", "fast path", "sreels/inference/batchfit.py",
      "            out[ok] = np.linalg.inv(A[ok])\n", "            out[ok] = 0.5 * np.linalg.inv(A[ok])\n",
      tuple(FAST), "batched LM covariance halved (errors / sqrt 2)"),
    M("P3", "fast path", "sreels/inference/edgefits.py",
      "return gain * np.maximum(sm, 1.0) + readout**2", "return gain**2 * np.maximum(sm, 1.0) + readout**2",
      tuple(FAST), "shot variance gain^2 * counts instead of gain * counts"),
    M("P4", "fast path", "sreels/inference/fast.py",
      "f = np.maximum(np.nan_to_num(res.chi2_red, nan=1.0), 1.0)[:, None, None]",
      "f = np.sqrt(np.maximum(np.nan_to_num(res.chi2_red, nan=1.0), 1.0))[:, None, None]",
      tuple(FAST), "poor fits: covariance scaled by sqrt(chi2_red), not chi2_red"),
    M("P5", "fast path", "sreels/inference/fast.py",
      "q_err = np.abs(q) * np.hypot(a_err / a, ti[\"n_err\"] / ti[\"n\"])",
      "q_err = np.abs(q) * a_err / np.abs(a)",
      tuple(FAST), "Li per Ti atom: the Ti amount's error left out"),
    M("P6", "calibration", "sreels/structures/resonance.py",
      "rel = np.hypot(c_err_ev_nm2 / (2 * c_ev_nm2), s_de / (2 * de))",
      "rel = np.hypot(c_err_ev_nm2 / (2 * c_ev_nm2), s_de / de)",
      tuple(FAST_DEF + CALIB), "R error from E_b: dR/R = dE/E instead of dE/(2E)"),
    M("P7", "fast path (derived)", "sreels/inference/derived.py",
      "out[\"r_oo_parent_nm_err\"] = float(np.sqrt(np.sum(r_e[par] ** 2) / par.sum() ** 2",
      "out[\"r_oo_parent_nm_err\"] = float(np.sqrt(np.sum(r_e[par] ** 2) / par.sum()",
      tuple(DERIVED), "parent R_OO: error of a single row reported for the mean"),
    M("P8", "fast path (derived)", "sreels/inference/derived.py",
      "0.5 * (pm[0][k].value - pm[1][k].value)", "0.0 * (pm[0][k].value - pm[1][k].value)",
      tuple(DERIVED), "normalisation error left out of electrode width and c_max"),
    M("P9", "fast path (derived)", "sreels/inference/derived.py",
      "out[\"ti_boundary_nm_err\"] = float(np.hypot(ti_fit.params[\"boundary_nm\"].stderr or np.nan, model_term))",
      "out[\"ti_boundary_nm_err\"] = float(np.hypot(ti_fit.params[\"boundary_nm\"].stderr or np.nan, 0.0))",
      tuple(DERIVED), "Ti boundary error without its model term"),
    # ----------------------------------------------------------- Bayesian path (own)
    M("B1", "bayes", "sreels/inference/bayes/data.py",
      "rv = (det.readout_noise_counts ** 2 + (QUANTISATION_VAR if det.quantise else 0.0)) * fac \\",
      "rv = (det.readout_noise_counts ** 2 + (QUANTISATION_VAR if det.quantise else 0.0)) * 1.0 \\",
      tuple(BAYES), "readout variance not carried through the PSF whitening and binning"),
    M("B2", "bayes", "sreels/inference/bayes/data.py",
      "            / det.gain_counts_per_e ** 2", "            / det.gain_counts_per_e",
      tuple(BAYES), "readout variance converted to electrons^2 with g instead of g^2"),
    M("B3", "bayes", "sreels/inference/bayes/results.py",
      'cols[f"{k}_err"] = 0.5 * (hi - lo)', 'cols[f"{k}_err"] = hi - lo',
      tuple(BAYES), "profile band _err = the whole 16-84 width"),
    M("B4", "bayes", "sreels/inference/bayes/results.py",
      '"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0}',
      '"mean": float(x.mean()), "sd": float(x.std(ddof=1)) / 2 if x.size > 1 else 0.0}',
      tuple(BAYES), "summary parameter sd halved"),
    M("B5", "bayes", "sreels/inference/bayes/optimize.py",
      "cov = np.linalg.inv(J.T @ J)", "cov = 0.5 * np.linalg.inv(J.T @ J)",
      tuple(BAYES), "MAP covariance halved"),
    M("B6", "bayes", "sreels/inference/bayes/data.py",
      "fac_e = np.sum(inv_e[sl].reshape(n // bin, bin, ch).sum(1) ** 2, axis=1)",
      "fac_e = np.sum(inv_e[sl].reshape(n // bin, bin, ch) ** 2, axis=(1, 2))",
      tuple(BAYES), "whitened readout variance of a bin summed as if channels were independent"),
    # ----------------------------------------------------------- structures
    M("S1", "structures", "sreels/structures/oo.py",
      'def oo_distances(atoms, cation: str, name: str = "structure", shell_factor: float = 1.2)',
      'def oo_distances(atoms, cation: str, name: str = "structure", shell_factor: float = 1.5)',
      tuple(STRUCT), "nearest-neighbour shell cut at 1.5 x the shortest O-O"),
    M("S2", "structures", "sreels/structures/measured.py",
      "spread = 0.5 * abs(oo.oo_octahedral_edge_nm - oo.oo_nearest_nm)", "spread = 0.0 * abs(oo.oo_octahedral_edge_nm - oo.oo_nearest_nm)",
      tuple(STRUCT), "R error without the definition spread"),
    M("S3", "structures", "sreels/structures/mapping.py",
      "return r_parent_nm + (r_max_nm - r_parent_nm) * (li - 1.0) / (li_max_rel - 1.0)",
      "return r_parent_nm + (r_max_nm - r_parent_nm) * li / li_max_rel",
      tuple(["tests/structures/test_mapping.py"]), "linear R(c_Li) law anchored at c_Li = 0, not the parent"),
    M("S4", "structures", "sreels/structures/oo.py",
      "        trans = np.argmax(dd, axis=1)\n", "        trans = np.argsort(dd, axis=1)[:, -2]\n",
      tuple(STRUCT), "octahedral edges: a cis pair dropped instead of the trans diagonal"),
    # ----------------------------------------------------------- calibration / thresholds
    M("C1", "calibration", "sreels/structures/calibration.py",
      "new_sigma = np.hypot(se, 2 * theta[0] / r**3 * sr)", "new_sigma = np.hypot(se, 0 * theta[0] / r**3 * sr)",
      tuple(CALIB), "effective variance without the R errors"),
    M("C2", "calibration", "sreels/inference/okpeaks.py",
      "sig = _sigma_ch(np.sqrt(max(EFFECTIVE_FWHM_EV**2 - res**2, 0.0)) * FWHM_TO_SIGMA, de)",
      "sig = _sigma_ch(EFFECTIVE_FWHM_EV * FWHM_TO_SIGMA, de)",
      tuple(CALIB + ["tests/inference/test_okpeaks.py"]),
      "threshold read without taking the data's resolution into account"),
    M("C3", "calibration", "sreels/structures/okedge.py",
      "return float(np.hypot(self.peak_b_err_ev, self.threshold_err_ev))", "return float(self.peak_b_err_ev)",
      tuple(CALIB), "dE error without the threshold error"),
    M("C4", "calibration", "sreels/structures/resonance.py",
      "    return threshold_ev + c_ev_nm2 / r**2", "    return threshold_ev + c_ev_nm2 / r**1.9",
      tuple(CALIB), "resonance law with R^-1.9"),
    M("C5", "calibration", "sreels/structures/calibration.py",
      "    c_err = float(np.sqrt(cov[0, 0]))\n", "    c_err = float(np.sqrt(cov[0, 0] * chi2 / max(dof, 1)))\n",
      tuple(CALIB), "C error rescaled by chi2/dof although the input errors are stated"),
]


def _copy_tree(dst: Path):
    ign = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info")
    for d in ("sreels", "tests"):
        shutil.copytree(ROOT / d, dst / d, ignore=ign)
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")


def _env(dst: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(dst), MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.pop("SREELS_DATA_DIR", None)
    return env


def _pytest(dst: Path, tests, slow: bool, timeout: float):
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", "-rfE",
           *(["-m", "slow or not slow"] if slow else []), *tests]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=dst, env=_env(dst), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    dt = time.perf_counter() - t0
    failed = [ln for ln in p.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    if not failed:
        failed = [ln for ln in p.stdout.splitlines() if "::" in ln and ("FAIL" in ln or "Error" in ln)]
    summary = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr.strip()[-300:]
    return {0: "survived", 1: "killed", 5: "no_tests"}.get(p.returncode, f"error_rc{p.returncode}"), dt, \
        (failed[0] if failed else summary)


def apply(text: str, mut: Mutation):
    n = text.count(mut.old)
    if n == 0:
        return None, "pattern_not_found"
    if n > 1:
        return None, "pattern_ambiguous"
    return text.replace(mut.old, mut.new), None


def run(mutations, slow=False, timeout=900.0, check_only=False):
    rows = []
    with tempfile.TemporaryDirectory(prefix="sreels-mut-") as tmp:
        base = Path(tmp) / "baseline"
        _copy_tree(base)
        probe = subprocess.run([sys.executable, "-c", "import sreels; print(sreels.__file__)"], cwd=base,
                               env=_env(base), capture_output=True, text=True)
        if not probe.stdout.strip().startswith(str(base)):
            raise SystemExit(f"the copy is not what gets imported: {probe.stdout or probe.stderr}")
        for mut in mutations:  # patterns first: report every stale one before running anything
            _, err = apply((base / mut.file).read_text(), mut)
            rows.append(dict(asdict(mut), status=err or "pending", seconds=0.0, detail=""))
        if check_only:
            return rows, None
        union = sorted({t for m in mutations for t in m.tests})
        st, dt, detail = _pytest(base, union, slow, timeout * 3)
        baseline = {"status": st, "seconds": round(dt, 1), "detail": detail, "tests": union}
        print(f"baseline (unmutated): {st} in {dt:.0f} s -- {detail}", flush=True)
        if st != "survived":
            raise SystemExit("the unmutated copy fails its own tests: fix that first")
        for row in rows:
            if row["status"] != "pending":
                print(f"{row['id']:>3} {row['status']}: {row['file']}", flush=True)
                continue
            dst = Path(tmp) / row["id"]
            _copy_tree(dst)
            f = dst / row["file"]
            f.write_text(apply(f.read_text(), Mutation(**{k: row[k] for k in Mutation.__dataclass_fields__}))[0])
            st, dt, detail = _pytest(dst, list(row["tests"]), slow, timeout)
            row.update(status=st, seconds=round(dt, 1), detail=detail)
            print(f"{row['id']:>3} {st:<9} {dt:6.0f} s  {row['what']}  -- {detail}", flush=True)
            shutil.rmtree(dst, ignore_errors=True)
    return rows, baseline


def write_table(rows, baseline, out: Path, slow: bool):
    out.mkdir(parents=True, exist_ok=True)
    ran = [r for r in rows if r["status"] in ("killed", "survived") or r["status"].startswith(("error", "timeout"))]
    killed = [r for r in ran if r["status"] != "survived"]
    stale = [r for r in rows if r["status"].startswith("pattern")]
    head = (f"# Mutation kill table (validation/07_mutations.py)\n\n"
            f"{len(killed)} / {len(ran)} killed ({100 * len(killed) / max(len(ran), 1):.0f} %); "
            f"{len(stale)} pattern(s) stale (not run); tests: {'default + slow' if slow else 'default (not slow)'} "
            f"subset per mutation, pytest -x, measured-data-free copy.\n\n"
            f"Baseline (unmutated copy, union of the subsets): {baseline['status'] if baseline else 'not run'}"
            f"{'' if not baseline else ', %.0f s' % baseline['seconds']}"
            f"{'' if not baseline or 'note' not in baseline else ' (' + baseline['note'] + ')'}.\n\n"
            "| id | area | mutation | file | status | s | first failing test / note |\n|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r['id']} | {r['area']} | {r['what']} | `{r['file']}` | {r['status']} | {r['seconds']:.0f} | "
                   f"{r['detail'].replace('|', '/')[:160]} |\n" for r in rows)
    tmp = out / "kill_table.md.tmp"
    tmp.write_text(head + body)
    tmp.replace(out / "kill_table.md")
    tmpj = out / "kill_table.json.tmp"
    tmpj.write_text(json.dumps({"killed": len(killed), "run": len(ran), "stale": len(stale), "slow": slow,
                                "baseline": baseline, "mutations": rows}, indent=1))
    tmpj.replace(out / "kill_table.json")
    return len(killed), len(ran), len(stale)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="ID", help="run these mutations only")
    ap.add_argument("--check", action="store_true", help="only check that every pattern matches exactly once")
    ap.add_argument("--slow", action="store_true", help="include the slow tests of each subset")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mutation (default 900)")
    ap.add_argument("--update", action="store_true",
                    help="with --only: replace those rows of an existing kill_table.json instead of a new table")
    ap.add_argument("--out", default=str(ROOT / "validation" / "results" / "07_mutations"))
    a = ap.parse_args(argv)
    muts = [m for m in MUTATIONS if not a.only or m.id in a.only]
    unknown = set(a.only or ()) - {m.id for m in MUTATIONS}
    if unknown:
        raise SystemExit(f"unknown mutation id(s) {sorted(unknown)}; known: {[m.id for m in MUTATIONS]}")
    rows, baseline = run(muts, a.slow, a.timeout, a.check)
    if a.check:
        bad = [r for r in rows if r["status"] != "pending"]
        for r in rows:
            print(f"{r['id']:>3} {'ok' if r['status'] == 'pending' else r['status']:<18} {r['file']}")
        return 1 if bad else 0
    if a.update:
        old = json.loads((Path(a.out) / "kill_table.json").read_text())
        new = {r["id"]: r for r in rows}
        rows = [new.get(r["id"], r) for r in old["mutations"]] + [r for r in rows if r["id"] not in
                                                                  {o["id"] for o in old["mutations"]}]
        baseline = dict(baseline, note=f"rows {sorted(new)} rerun with --update; others from the previous run "
                                       f"(baseline then: {old['baseline']['status']})")
    k, n, stale = write_table(rows, baseline, Path(a.out), a.slow)
    print(f"{k} / {n} killed; {stale} stale pattern(s); table in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
