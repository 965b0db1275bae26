"""Measured MLLS standards for the Ti-L2,3 fit (``sreels fit --reference``)."""

import numpy as np
import pytest

from sreels.axes import EnergyAxis
from sreels.config import Instrument, Scenario
from sreels.errors import SreelsInputError
from sreels.forward.detector import psf_kernel
from sreels.forward.model import reference_spectra
from sreels.forward.simulate import simulate
from sreels.inference.fast import FitSettings, fit_image, usable
from sreels.inference.references import parse_references

from .fasthelpers import pulls, windows_of


def write_standard(path, name, rng, shift_ev=0.0, peak_counts=1e6, psf_decay=0.2):
    """A measured-like standard: the forward model's per-atom shape of ``name`` at the image's
    resolution and camera PSF, on a power-law background (jump ratio ~3), Poisson noise at the
    dose of a standard summed over many pixels (1e6 counts at the white line), written as .dat."""
    axis = EnergyAxis(400.0 + shift_ev, 0.1, 1200)
    ref = reference_spectra(axis, Instrument(), ("Ti-L23",))[name]
    lam = peak_counts * ref / ref.max() + 3e5 * (axis.energy_ev / 400.0) ** -3.0
    k = psf_kernel(psf_decay)
    lam = np.convolve(np.pad(lam, k.size, mode="edge"), k, mode="same")[k.size:-k.size]
    y = rng.poisson(lam).astype(float)
    np.savetxt(path, np.column_stack([axis.energy_ev - shift_ev, y]))
    return path


@pytest.fixture(scope="module")
def image():
    # single scattering: the standards are compared with the model's references on the same data
    return simulate(Scenario(rows=120, row_nm=5.0, first_row_nm=0.0),
                    Instrument(plural_scattering=False, lowloss_window=False), rng=41)


def test_measured_standards_give_the_same_honest_ti3_fractions(image, tmp_path):
    rng = np.random.default_rng(5)
    refs = parse_references([f"Ti4+={write_standard(tmp_path / 'ti4.dat', 'Ti4+', rng)}",
                             f"Ti3+={write_standard(tmp_path / 'ti3.dat', 'Ti3+', rng)}"])
    model = fit_image(windows_of(image))
    meas = fit_image(windows_of(image), FitSettings(ti_references=refs))
    assert any("measured standards for Ti3+, Ti4+" in n for n in meas.notes)
    z = pulls(image, meas, "ti3_fraction_raw", "ti3_fraction_row")
    assert z.size > 100 and abs(z.mean()) < 0.25 and 0.8 < z.std() < 1.25, (z.mean(), z.std())
    ok = usable(model.status) & usable(meas.status)
    d = (meas.columns["ti3_fraction_raw"] - model.columns["ti3_fraction_raw"])[ok]
    assert np.median(np.abs(d)) < 0.5 * np.median(model.columns["ti3_fraction_err"][ok])
    # Li per Ti atom is unchanged: the standards are scaled per atom like the model
    li = (meas.columns["li_rel"] / model.columns["li_rel"])[ok]
    assert np.median(li) == pytest.approx(1.0, abs=0.01)


def test_standards_on_another_energy_scale_are_moved_onto_the_models(image, tmp_path):
    """Both standards recorded 0.7 eV off (another session's calibration): moved back, so the
    O-K peak positions (the row shift is removed from them) and R_OO do not move."""
    def fit(shift_ev):
        rng = np.random.default_rng(8)
        refs = (("Ti4+", str(write_standard(tmp_path / "ti4.dat", "Ti4+", rng, shift_ev=shift_ev))),
                ("Ti3+", str(write_standard(tmp_path / "ti3.dat", "Ti3+", rng, shift_ev=shift_ev))))
        return fit_image(windows_of(image), FitSettings(ti_references=refs))

    a, b = fit(0.0), fit(0.7)
    ok = usable(a.status) & usable(b.status)
    d = (b.columns["peak_b_ev"] - a.columns["peak_b_ev"])[ok] / a.columns["peak_b_ev_err"][ok]
    assert np.max(np.abs(d)) < 0.1, np.max(np.abs(d))
    assert any("moved by +0.70 eV" in n or "moved by +0.69 eV" in n or "moved by +0.71 eV" in n for n in b.notes), b.notes


def test_a_misaligned_standard_shows_as_a_shift_step(image, tmp_path):
    """The standards are really used: with the Ti3+ standard's axis 1 eV off, the per-row shift
    steps by 1 eV between the Ti3+ and the Ti4+ rows (0 with aligned standards)."""
    def step(shift_ev):
        rng = np.random.default_rng(6)
        refs = (("Ti4+", str(write_standard(tmp_path / "ti4.dat", "Ti4+", rng))),
                ("Ti3+", str(write_standard(tmp_path / "ti3.dat", "Ti3+", rng, shift_ev=shift_ev))))
        c = fit_image(windows_of(image), FitSettings(ti_references=refs)).columns
        f3, d = c["ti3_fraction"], c["ti_shift_ev"]
        return np.nanmedian(d[f3 > 0.95]) - np.nanmedian(d[f3 < 0.05])

    assert abs(step(0.0)) < 0.03
    assert abs(abs(step(1.0)) - 1.0) < 0.1


def test_bad_references_are_named(tmp_path):
    with pytest.raises(SreelsInputError, match="unknown component"):
        parse_references(["Ti5+=x.dat"])
    with pytest.raises(SreelsInputError, match="NAME=FILE"):
        parse_references(["rutile.msa"])
    with pytest.raises(SreelsInputError, match="twice"):
        parse_references(["Ti4+=a.dat", "Ti4+=b.dat"])
    e = np.arange(500.0, 560.0, 0.1)  # an O-K range: does not cover the Ti-L2,3 fit
    np.savetxt(tmp_path / "ok.dat", np.column_stack([e, 1e5 * (e / 500) ** -3]))
    sim = simulate(Scenario(rows=20, row_nm=20.0, first_row_nm=0.0), rng=1)
    with pytest.raises(SreelsInputError, match="covers 500.0-559.9 eV"):
        fit_image(windows_of(sim), FitSettings(ti_references=(("Ti4+", str(tmp_path / "ok.dat")),)))
