"""run_bayes on folders written by `sreels simulate`; exit codes; bad input flagged or refused."""

import argparse
import dataclasses
import json

import numpy as np
import pytest

from sreels.cli import main as sreels_main
from sreels.errors import SreelsInputError
from sreels.forward.simulate import simulate
from sreels.inference.bayes.commands import EXIT_UNCONVERGED, configure_bayes, run_bayes
from sreels.inference.bayes.data import from_simulation, prepare
from sreels.inference.bayes.fit import fit_bayes


def _args(inputs, out, **kw):
    p = argparse.ArgumentParser()
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out")
    p.add_argument("--seed", type=int)
    p.add_argument("--overwrite", action="store_true")
    configure_bayes(p)
    a = p.parse_args([*map(str, inputs), "--out", str(out)])
    for k, v in kw.items():
        setattr(a, k, v)
    return a


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim") / "img"
    toml = d.parent / "single.toml"  # the Bayesian model's own data: single scattering, no low loss
    toml.write_text("[instrument]\nplural_scattering = false\nlowloss_window = false\n")
    assert sreels_main(["simulate", "--seed", "4", "--rows", "60", "--scenario", str(toml), "--out", str(d)]) == 0
    return d


def test_unconverged_run_exits_3_and_still_writes_flagged_results(folder, tmp_path, monkeypatch):
    out = tmp_path / "fit"
    # the fit is run once: --allow-unconverged below reuses it (same result, only the exit code differs)
    import sreels.inference.bayes.commands as cmd
    first = {}
    real = cmd.run_on_data

    def once(*a, **k):
        if "r" not in first:
            first["r"] = real(*a, **k)
        return first["r"]

    monkeypatch.setattr(cmd, "run_on_data", once)
    rc = run_bayes(_args([folder], out, seed=1, steps=20))
    assert rc == EXIT_UNCONVERGED
    s = json.loads((out / "summary.json").read_text())
    assert s["converged"] is False and s["convergence_reasons"]
    assert any("not converged" in f for f in s["flags"])
    for k in ("electrode_width_nm", "ti_boundary_nm", "li_max_rel", "li_at_ti_boundary_rel", "r_oo_parent_nm",
              "r_oo_max_nm"):
        d = s["derived"][k]
        assert d["p2_5"] <= d["p16"] <= d["median"] <= d["p84"] <= d["p97_5"]
        assert s[f"{k}_err"] > 0
    for f in ("posterior.nc", "profiles.csv", "corner.png", "parameters.png", "profiles.png", "residuals.png"):
        assert (out / f).is_file()
    header = (out / "profiles.csv").read_text().splitlines()[0].split(",")
    assert {"li_rel_lo", "li_rel_hi", "ti3_fraction_lo", "ti3_fraction_hi", "r_oo_nm_lo", "r_oo_nm_hi"} <= set(header)
    import arviz as az
    idata = az.from_netcdf(str(out / "posterior.nc"))
    assert "ti_boundary_nm" in idata.posterior and idata.posterior.sizes["chain"] >= 24
    _check_inference_data(idata, rows=60)
    # the gallery's read_posterior.py on this file
    from tests.test_examples import load
    table, loo = load("read_posterior").main(str(out / "posterior.nc"), str(tmp_path / "ppc.png"))
    assert list(table.index)[:2] == ["electrode_width_nm", "ti_boundary_nm"] and (tmp_path / "ppc.png").is_file()
    # an existing folder is refused before any work
    with pytest.raises(SreelsInputError, match="exists"):
        run_bayes(_args([folder], out, seed=1, steps=20))
    # --allow-unconverged turns the exit code into 0 (the fit itself is reused: same result)
    assert run_bayes(_args([folder], tmp_path / "fit2", seed=1, steps=20, allow_unconverged=True)) == 0


def test_non_finite_counts_are_refused(small):
    sim = simulate(small["scenario"], small["instrument"], small["detector"], rng=3, models=small["models"])
    counts = {k: w.counts.astype(float).copy() for k, w in sim.windows.items()}
    counts["high"][3, 100] = np.nan
    with pytest.raises(SreelsInputError, match="non-finite"):
        prepare(counts, sim.config, sim.position.y_nm, sim.position.scale_nm)


def test_an_image_without_ti_edge_is_flagged(small):
    """Replace the Ti-L2,3 region by a smooth power law: the model cannot describe it, and says so."""
    sim = simulate(small["scenario"], small["instrument"], small["detector"], rng=3, models=small["models"])
    counts = {k: w.counts.astype(float).copy() for k, w in sim.windows.items()}
    e = sim.windows["high"].energy.energy_ev
    sl = (e > 452) & (e < 480)
    ref = counts["high"][:, (e > 445) & (e < 450)].mean(1, keepdims=True)
    counts["high"][:, sl] = ref * (e[sl] / 447.5) ** -3.2
    data = prepare(counts, sim.config, sim.position.y_nm, sim.position.scale_nm)
    fit = fit_bayes(data, small["priors"], sample=False)
    assert any("does not describe the data" in f for f in fit.flags)


def test_priors_that_exclude_the_data_are_flagged(small, small_fit):
    from sreels.inference.bayes.priors import build_priors
    sim, _ = small_fit
    pr = build_priors(small["instrument"], {"priors": {"li_max_rel": {"dist": "uniform", "lo": 1.0, "hi": 6.5}}})
    fit = fit_bayes(from_simulation(sim), pr, sample=False)
    flag = next(f for f in fit.flags if "prior bound" in f and "li_max_rel" in f)
    assert "may exclude the data" in flag and "harmless" not in flag


def test_a_bound_no_derived_number_depends_on_is_told_apart(small):
    """bound_correlations: a parameter near its bound that no derived number correlates with (the background's
    exponent, independent in this covariance) is harmless; one the derived numbers are made of (li_max_rel) is not;
    a correlation put into the covariance is read back."""
    from sreels.inference.bayes.fit import BOUND_CORRELATION, bound_correlations, default_start
    from sreels.inference.bayes.optimize import MapResult

    pr = small["priors"]
    names = pr.pset.names
    theta = default_start(pr, small["instrument"])
    cov = np.diag((0.01 * (pr.bounds[:, 1] - pr.bounds[:, 0])) ** 2)
    bg = next(n for n in names if n.startswith("background_r"))
    m = MapResult(names, theta, cov, 1.0, 100, 1, True, "", (bg, "li_max_rel"), 0.0)
    c = bound_correlations(pr, m)
    assert c[bg] < 1e-9 and c["li_max_rel"] > 0.99
    i, j = names.index(bg), names.index("li_max_rel")
    cov2 = cov.copy()
    cov2[i, j] = cov2[j, i] = 0.5 * np.sqrt(cov[i, i] * cov[j, j])
    c2 = bound_correlations(pr, MapResult(names, theta, cov2, 1.0, 100, 1, True, "", (bg,), 0.0))
    assert c2[bg] > BOUND_CORRELATION and c2[bg] == pytest.approx(0.5, abs=0.05)


def test_detector_from_metadata_and_command_line():
    from sreels.config import Detector
    from sreels.inference.bayes.commands import detector_for

    meta = {"gain_counts_per_e": 2.0, "psf_decay": 0.1, "readout_noise_counts": 4.0, "quantise": "true",
            "adc_max_counts": "65535", "dark_subtracted": 1}
    det, known, notes = detector_for(meta, None)
    assert known and not notes and (det.gain_counts_per_e, det.psf_decay, det.readout_noise_counts) == (2.0, 0.1, 4.0)
    assert det.dark_subtracted is True and det.quantise is True and det.adc_max_counts == 65535
    det, known, notes = detector_for(meta, None, gain=3.0)
    assert det.gain_counts_per_e == 3.0 and known
    det, known, notes = detector_for({}, None)
    assert not known and det == Detector() and len(notes) == 2  # readout and PSF assumed, and said so
    toml = Detector(gain_counts_per_e=1.2)
    assert detector_for({"gain_counts_per_e": 9.0}, toml) == (toml, True, [])


def test_an_unknown_gain_is_estimated_from_the_map_chi2(small):
    """Simulated with gain 3.1 counts/e, read as if the gain were unknown (default 1.55): the
    estimate lands within 3 % and the MAP errors are honest again (18 pulls within chi2_18)."""
    from scipy import stats

    from sreels.inference.bayes.commands import estimate_gain

    det = dataclasses.replace(small["detector"], gain_counts_per_e=3.1)
    sim = simulate(small["scenario"], small["instrument"], det, rng=21, models=small["models"])
    counts = {k: w.counts for k, w in sim.windows.items()}
    sat = {k: w.saturated for k, w in sim.windows.items()}  # the doubled gain saturates ~150 low-loss pixels

    def prepared(d):
        return prepare(counts, dataclasses.replace(sim.config, detector=d), sim.position.y_nm, sim.position.scale_nm,
                       saturated=sat)

    det0 = small["detector"]
    est, data, note = estimate_gain(prepared(det0), small["priors"], det0, prepared)
    assert est.gain_counts_per_e == pytest.approx(3.1, rel=0.03) and "gain unknown" in note
    m = fit_bayes(data, small["priors"], sample=False).map
    pulls = (m.theta - small["truth"]) / m.sd
    assert np.sum(pulls ** 2) < stats.chi2.ppf(0.999, pulls.size) and abs(m.chi2_red - 1) < 0.02


def _check_inference_data(idata, rows):
    """posterior.nc works with ArviZ's model checking: loo over rows, posterior predictive
    checks against the observed data, prior draws inside their bounds, units everywhere."""
    import warnings

    import arviz as az
    import matplotlib.pyplot as plt
    for g in ("posterior", "sample_stats", "log_likelihood", "observed_data", "posterior_predictive", "prior"):
        assert g in idata.groups(), g
    ll = idata.log_likelihood["rows"]
    assert ll.sizes["row"] == rows and np.isfinite(ll.values).all()
    assert set(idata.observed_data.data_vars) == set(idata.posterior_predictive.data_vars) == {"low", "high"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata)
        ax = az.plot_ppc(idata, var_names=["high"], num_pp_samples=2)
    plt.close("all")
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == rows and 0 < loo.p_loo < 100
    assert ax is not None
    assert idata.posterior["r_oo_parent_nm"].attrs["units"] == "nm"
    assert idata.posterior["peak_a_ev"].attrs["units"] == "eV"
    assert idata.posterior["li_max_rel"].attrs["units"] == "1"
    assert "parent" in idata.posterior["li_max_rel"].attrs["description"]
    w = idata.prior["electrode_width_nm"].values
    assert w.min() >= 20.0 and w.max() <= 3000.0 and w.std() > 100  # draws from the prior, not the posterior
    # replicated data scatter about the observed data like the noise: chi2 per bin ~ 1 (unconverged: loose)
    obs = idata.observed_data["high"].values
    rep = idata.posterior_predictive["high"].values[0, 0]
    ok = np.isfinite(obs) & np.isfinite(rep)
    z2 = (rep[ok] - obs[ok]) ** 2 / np.maximum(np.abs(obs[ok]), 1.0)
    assert 1.0 < np.mean(z2) < 4.0  # difference of two noisy images: ~2


def test_a_dualeels_input_warns_or_is_fitted_with_plural_scattering(tmp_path, capsys):
    """A DualEELS pair (12 rows from the Pt side, t/lambda ~0.8) hands its low loss to the model by default
    (sreels.inference.bayes.plural) and says so; with plural=False (--no-plural) it warns that the model has
    no plural scattering, with the t/lambda it read."""
    import re

    from sreels.inference.bayes.commands import load_input

    d = tmp_path / "dual"
    assert sreels_main(["simulate", "--seed", "2", "--rows", "12", "--out", str(d)]) == 0
    capsys.readouterr()
    out = load_input([str(d)])
    ll = out[-1]
    assert ll is not None and ll["counts"].shape[0] == 12 and ll["exposure_ratio"]["low"] > 1
    m = re.search(r"note: t/lambda = ([0-9.]+) \(median\) from the low-loss window", capsys.readouterr().out)
    assert m and 0.4 < float(m.group(1)) < 1.2
    assert load_input([str(d)], plural=False)[-1] is None
    out = capsys.readouterr().out
    m = re.search(r"warning: t/lambda = ([0-9.]+) from the low-loss window", out)
    assert m and 0.4 < float(m.group(1)) < 1.2 and "no plural scattering" in out, out


def test_the_command_line_fits_dualeels_with_plural_scattering_by_default():
    """`sreels fit --method bayes` on a DualEELS input takes the plural model unless --no-plural (the fit command's
    own --plural was a store_true flag defaulting to off, which hid the Bayesian default)."""
    from sreels.cli import build_parser

    p = build_parser("fit")
    assert p.parse_args(["fit", "x.hspy", "--out", "o", "--method", "bayes"]).plural is True
    assert p.parse_args(["fit", "x.hspy", "--out", "o", "--method", "bayes", "--no-plural"]).plural is False


def _write_msa(path, energy_ev, counts):
    energy_ev, counts = [float(e) for e in energy_ev], [float(c) for c in counts]
    lines = ["#FORMAT : EMSA/MAS Spectral Data File", "#VERSION : 1.0", "#TITLE : one row", "#NPOINTS : "
             f"{len(energy_ev)}", "#NCOLUMNS : 1", "#XUNITS : eV", "#YUNITS : counts", "#DATATYPE : XY",
             f"#XPERCHAN : {energy_ev[1] - energy_ev[0]!r}", f"#OFFSET : {energy_ev[0]!r}",
             "#SPECTRUM : Spectral Data Starts Here"]
    lines += [f"{e!r}, {c!r}" for e, c in zip(energy_ev, counts)] + ["#ENDOFDATA : "]
    path.write_text("\n".join(lines) + "\n")


def test_a_single_spectrum_is_refused_before_fitting(folder, tmp_path, capsys):
    """One row has no profile: the joint model's electrode width, boundaries and R_OO change are not constrained by
    it.  Fitted anyway (a measured SrTiO3 spectrum), the MAP covariance was singular, the sampler did not run and
    summary.json's top level held the optimiser's start (electrode width 400 nm) as numbers (exit 3).  Now exit 2
    before any fitting, naming the input and its one row and pointing to --method fast (which fits it)."""
    from sreels.inference.load import load_measurement

    high = load_measurement([str(folder / "high.hspy")])["high"]
    one = tmp_path / "one_row.msa"
    _write_msa(one, np.asarray(high.energy.energy_ev, float), np.asarray(high.counts, float)[40])
    out = tmp_path / "fit"
    rc = sreels_main(["fit", str(one), "--method", "bayes", "--seed", "1", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "one_row.msa" in err[0] and "one row (a single spectrum)" in err[0] and "--method fast" in err[0], err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["one_row.msa"]
    # the refusal is the Bayesian path's alone: the fast path fits the spectrum
    assert sreels_main(["fit", str(one), "--out", str(out)]) in (0, 4)
    assert (out / "spectrum_fits.png").is_file()


def test_without_a_posterior_no_derived_number_is_reported(folder, tmp_path, monkeypatch, capsys):
    """A MAP covariance that is not positive definite (measured scans the model cannot constrain: LSMO/STO, a single
    spectrum) skips the sampler.  summary.json's top level then held the MAP's derived numbers with ``_err`` null,
    presented as results; now null, with a note, and the MAP's values under ``map_not_final`` with the reason."""
    import sreels.inference.bayes.fit as bfit

    monkeypatch.setattr(bfit, "_positive_definite", lambda cov: False)
    out = tmp_path / "fit"
    rc = run_bayes(_args([folder], out, seed=1))
    assert rc == EXIT_UNCONVERGED
    s = json.loads((out / "summary.json").read_text())
    keys = ("electrode_width_nm", "ti_boundary_nm", "li_max_rel", "li_at_ti_boundary_rel", "r_oo_parent_nm",
            "r_oo_max_nm", "r_oo_change_nm")
    assert not s["converged"] and any(f.startswith("sampler not run") for f in s["flags"])
    for k in keys:
        assert s[k] is None and s[f"{k}_err"] is None, k
        assert s["map_not_final"][k] == s["derived"][k]["map"], k
    assert s["map_not_final"]["reason"].startswith("sampler not run")
    assert any("withheld (null)" in n and "map_not_final" in n for n in s["notes"])
    assert "no posterior: the derived numbers are withheld" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["summary.json"]


def test_a_map_only_summary_withholds_the_derived_numbers(small_fit):
    """summarise on a fit without samples (fit_bayes(sample=False)): the same withholding."""
    from sreels.inference.bayes.results import summarise

    _, fit = small_fit
    s = summarise(fit)
    assert s["electrode_width_nm"] is None and s["electrode_width_nm_err"] is None
    assert s["map_not_final"]["electrode_width_nm"] == pytest.approx(s["derived"]["electrode_width_nm"]["map"])
    assert "sample=False" in s["map_not_final"]["reason"]
