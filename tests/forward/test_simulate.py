"""Seeds, the output contract of `sreels simulate`, and bad input."""

import json

import numpy as np
import pytest

from sreels.cli import main
from sreels.config import Scenario, config_to_toml, load_config
from sreels.errors import SreelsInputError
from sreels.forward.simulate import simulate
from sreels.io import read_csv

SMALL = Scenario(rows=40, row_nm=47.0)


def test_same_seed_gives_identical_images_and_different_seeds_differ():
    a = simulate(SMALL, rng=11)
    b = simulate(SMALL, rng=11)
    c = simulate(SMALL, rng=12)
    for k in a.windows:
        np.testing.assert_array_equal(a.windows[k].counts, b.windows[k].counts)
        assert np.mean(a.windows[k].counts != c.windows[k].counts) > 0.9
    assert a.rng_record == {"seed": 11}


def test_generator_state_is_recorded_and_reproduces_the_image():
    g = np.random.default_rng(5)
    a = simulate(SMALL, rng=g)
    g2 = np.random.default_rng()
    g2.bit_generator.state = a.rng_record["bit_generator_state"]
    b = simulate(SMALL, rng=g2)
    np.testing.assert_array_equal(a.windows["high"].counts, b.windows["high"].counts)


def test_noise_free_mean_matches_average_of_readouts():
    sims = [simulate(SMALL, rng=s) for s in range(30)]
    mean = np.mean([s.windows["high"].counts for s in sims], axis=0)
    ref = simulate(SMALL, noise_free=True).windows["high"].counts
    # relative error of a 30-readout mean at >= 1e3 counts is < 1 %; allow 5 sigma
    sd = np.sqrt(1.55 * ref * 0.48 + 9) / np.sqrt(30)
    assert np.mean(np.abs(mean - ref) < 5 * sd) > 0.999


def test_cli_writes_the_output_contract(tmp_path):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--seed", "3", "--rows", "60", "--plot"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"low.hspy", "high.hspy", "truth.csv", "scenario.toml", "run.json", "spectrum_images.png"} <= names
    run = json.loads((out / "run.json").read_text())
    assert run["rng"] == {"seed": 3} and run["rows"] == 60
    truth = read_csv(out / "truth.csv")
    for col in ("y_nm", "li_rel", "ti3_fraction", "r_oo_nm", "peak_b_ev"):
        assert truth[col].shape == (60,)
    from rsciio.hspy import file_reader
    sig = file_reader(str(out / "high.hspy"))[0]
    assert sig["data"].shape == (60, 2048)
    ax_y, ax_e = sig["axes"]
    assert ax_y["units"] == "nm" and ax_y["navigate"] and ax_e["units"] == "eV" and not ax_e["navigate"]
    assert ax_e["offset"] == pytest.approx(420.0) and ax_e["scale"] == pytest.approx(0.1)
    assert sig["metadata"]["Acquisition_instrument"]["TEM"]["beam_energy"] == 300.0
    assert sig["metadata"]["sreels"]["seed"] == 3
    np.testing.assert_allclose(ax_y["offset"] + ax_y["scale"] * np.arange(60), truth["y_nm"])
    # the resolved scenario reads back to the same configuration
    cfg = load_config(out / "scenario.toml")
    assert cfg.scenario.rows == 60 and cfg == load_config(out / "scenario.toml")
    assert config_to_toml(cfg) == (out / "scenario.toml").read_text()


def test_cli_refuses_to_overwrite_and_leaves_nothing_on_failure(tmp_path, capsys):
    out = tmp_path / "sim"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert main(["simulate", "--out", str(out), "--rows", "10"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "user data"
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario]\nli_max_rel = -1.0\n")
    assert main(["simulate", "--scenario", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("toml, match", [
    ("[scenario]\nelectrode_widht_nm = 300\n", "did you mean 'electrode_width_nm'"),
    ("[scenario]\nli_max_rel = -2\n", "li_max_rel = -2"),
    ("[scenario]\nthickness_nm = -5\n", "thickness_nm = -5"),
    ("[scenario]\nti3_mode = 'guess'\n", "ti3_mode"),
    ("[scenario]\ngrains = [{center_nm = 1, width_nm = 5, fraction = 1.5}]\n", "fraction = 1.5"),
    ("[scenarios]\n", "unknown table"),
    ("[detector]\ngain_counts_per_e = 'high'\n", "expected a number"),
    ("[instrument]\nwindows = [{name = 'w', offset_ev = 300.0, edges = ['Li-K']}]\n", "cannot model Li-K"),
    ("[instrument]\nwindows = [{name = 'w', offset_ev = 300.0, edges = ['Xx-K']}]\n", "unknown edge"),
    ("[scenario\n", "not valid TOML"),
])
def test_bad_configuration_is_named(tmp_path, toml, match):
    f = tmp_path / "s.toml"
    f.write_text(toml)
    with pytest.raises(SreelsInputError, match=match):
        cfg = load_config(f)
        simulate(cfg.scenario, cfg.instrument, cfg.detector, rng=0)


def test_profile_table_validation(tmp_path):
    t = tmp_path / "p.csv"
    t.write_text("y_nm,li_rel,ti3_fraction\n0,5,0.5\n500,1,0\n400,1,0\n")
    with pytest.raises(SreelsInputError, match="increase strictly"):
        simulate(Scenario(rows=20, first_row_nm=0.0, profile_table=str(t)), rng=0)
    t.write_text("y_nm,li_rel,ti3_fraction\n0,5,1.5\n2000,1,0\n")
    with pytest.raises(SreelsInputError, match=r"ti3_fraction = 1.5: expected a finite number in \[0, 1\]"):
        simulate(Scenario(rows=20, first_row_nm=0.0, profile_table=str(t)), rng=0)
    t.write_text("y_nm,li_rel\n0,5\n100,1\n")
    with pytest.raises(SreelsInputError, match="covers y"):
        simulate(Scenario(rows=20, first_row_nm=0.0, profile_table=str(t)), rng=0)


def test_profile_table_drives_the_truth(tmp_path):
    t = tmp_path / "p.csv"
    t.write_text("y_nm,li_rel,ti3_fraction,r_oo_nm\n0,4,0.5,0.29\n2000,1,0,0.28\n")
    sim = simulate(Scenario(rows=20, row_nm=50.0, first_row_nm=0.0, profile_table=str(t), grains=()),
                   noise_free=True)
    np.testing.assert_allclose(sim.profiles.li_rel, np.interp(sim.profiles.y_nm, [0, 2000], [4, 1]))
    np.testing.assert_allclose(sim.profiles.peak_b_ev, 529.0 + 2.82 / sim.profiles.r_oo_nm**2)


def test_default_scenario_reproduces_the_study_numbers():
    p = simulate(noise_free=True).profiles
    y = p.y_nm
    ok = y >= 0
    assert p.li_rel[ok].max() == pytest.approx(8.5, abs=0.1)
    # Ti3+/Ti4+ boundary ~160 nm from Pt where c_Li ~ 6 (Yamamoto 2014, Sec. 3.3)
    yb = np.interp(0.5, p.ti3_fraction[ok][::-1], y[ok][::-1])
    assert yb == pytest.approx(160.0, abs=10.0)
    assert np.interp(yb, y, p.li_rel) == pytest.approx(6.0, abs=0.1)
    # electrode ~400 nm wide; R_OO 0.280 nm in the parent, ~0.310 nm at the maximum
    assert np.interp(400.0, y, p.li_rel) == pytest.approx(1.0 + 0.023 * 7.5, abs=0.05)
    assert p.r_oo_nm[-1] == pytest.approx(0.280, abs=1e-4)
    assert np.nanmax(p.r_oo_nm) == pytest.approx(0.310, abs=0.002)
    ti3 = ok & (p.ti3_fraction > 0.99)
    el4 = ok & (p.ti3_fraction < 0.01) & (p.li_rel > 2)
    assert np.all(np.abs(p.peak_a_ev[ti3] - 538.0 + 0.9) < 0.02)
    assert np.all(np.abs(p.peak_a_ev[el4] - 538.0 + 0.3) < 0.05)
    assert p.peak_a_rel[el4].mean() > 1.1 and p.peak_a_rel[ti3].mean() < p.peak_a_rel[el4].mean()


def test_cached_expectation_equals_a_fresh_one_and_follows_its_inputs(tmp_path):
    import dataclasses
    import os

    from sreels.config import Instrument
    from sreels.forward import simulate as sm
    from sreels.forward.instrument import energy_distortion
    from sreels.forward.model import RowState
    from sreels.forward.profiles import build_profiles

    sm.clear_expectation_cache()
    a = simulate(SMALL, rng=3)          # computes and keeps the expectation
    b = simulate(SMALL, rng=3)          # reuses it
    inst = Instrument()
    p = build_profiles(SMALL)
    fresh, truth = sm.expected_electrons(sm.window_models(inst), RowState.from_profiles(
        p, energy_distortion(p.y_nm, inst.energy_distortion_ev, inst.drift_ev)), inst, SMALL.row_nm)
    for k in a.windows:
        assert b.windows[k].electrons is a.windows[k].electrons   # the same (read-only) array
        assert not a.windows[k].electrons.flags.writeable
        np.testing.assert_array_equal(a.windows[k].electrons, fresh[k][1])
        np.testing.assert_array_equal(a.windows[k].counts, b.windows[k].counts)
    np.testing.assert_array_equal(a.lowloss_truth["t_over_lambda"], truth["t_over_lambda"])
    # another scenario, another instrument: other expectations (not the cached ones)
    c = simulate(dataclasses.replace(SMALL, li_max_rel=4.0), noise_free=True)
    assert not np.array_equal(c.windows["low"].electrons, a.windows["low"].electrons)
    d = simulate(SMALL, dataclasses.replace(inst, drift_ev=0.3), noise_free=True)
    assert not np.array_equal(d.windows["high"].electrons, a.windows["high"].electrons)
    # a profile table rewritten in place is read again
    t = tmp_path / "p.csv"
    sc = Scenario(rows=20, row_nm=50.0, first_row_nm=0.0, profile_table=str(t), grains=())
    t.write_text("y_nm,li_rel\n0,4\n2000,1\n")
    e1 = simulate(sc, noise_free=True).windows["low"].electrons
    t.write_text("y_nm,li_rel\n0,6\n2000,1\n")
    os.utime(t, ns=(os.stat(t).st_atime_ns, os.stat(t).st_mtime_ns + 10**9))
    e2 = simulate(sc, noise_free=True).windows["low"].electrons
    assert e2[0].sum() > e1[0].sum()   # more Li at y = 0
    assert len(sm._expectation_cache) <= sm.EXPECTATION_CACHE_ENTRIES
    sm.clear_expectation_cache()


def test_readouts_do_not_depend_on_threads_and_windows_have_independent_noise_of_the_right_size():
    """Each window draws from its own stream: the images are the same with one thread or several; the
    windows' noise is uncorrelated (the same stream in two windows would correlate their CF normals
    fully); without a PSF every window's pixels have variance gain^2 lam + readout^2 + 1/12."""
    from concurrent.futures import ThreadPoolExecutor

    from sreels.config import Detector
    from sreels.forward import simulate as sm

    sc = Scenario(rows=60, row_nm=25.0)
    det = Detector(psf_decay=0.0)
    a = simulate(sc, detector=det, rng=21)
    one = ThreadPoolExecutor(1)
    saved = sm._pool
    sm._pool = lambda: one
    try:
        b = simulate(sc, detector=det, rng=21)
    finally:
        sm._pool = saved
        one.shutdown()
    pulls = {}
    for k, w in a.windows.items():
        np.testing.assert_array_equal(w.counts, b.windows[k].counts)
        lam = w.electrons
        var = det.gain_counts_per_e**2 * lam + det.readout_noise_counts**2 + 1 / 12
        z = (w.counts.astype(float) - det.gain_counts_per_e * lam) / np.sqrt(var)
        n = z.size
        assert abs(z.mean()) < 5 / np.sqrt(n), k
        assert z.var() == pytest.approx(1.0, abs=5 * np.sqrt(2 / n) + 0.002), k
        pulls[k] = z.ravel()
    n = pulls["low"].size
    assert abs(np.corrcoef(pulls["low"], pulls["high"])[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(pulls["high"], pulls["lowloss"])[0, 1]) < 5 / np.sqrt(n)


def test_a_forked_process_simulates_after_its_parent_did():
    """The readout threads' pool is per process: a child forked after the parent simulated (and so
    holds a copy of the parent's pool without its threads) still finishes, with the parent's image."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    sc = Scenario(rows=12, row_nm=47.0)
    parent = simulate(sc, rng=4).windows["high"].counts
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=_simulate_into, args=(q, sc))
    child.start()
    try:
        got = q.get(timeout=60)   # (before join: the child exits only once its queue is drained)
    except Exception:
        got = None
    child.join(timeout=10)
    if child.is_alive():
        child.kill()
    assert got is not None, "the forked child hung"
    np.testing.assert_array_equal(got, parent)


def _simulate_into(q, sc):
    q.put(simulate(sc, rng=4).windows["high"].counts)
