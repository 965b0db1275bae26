"""Dose / readout regimes shared by the pull tests of both inversion paths (issue 16).

The default test images are bright enough that readout noise never matters; an error
model that forgot it would pass.  Each regime is (instrument, detector):

- ``low``: 1/20 of the default dose and 30 counts of readout noise.  Per channel the
  readout variance (900 counts^2) is ~12x (low window, median ~30 electrons) and ~2x
  (high window, ~180 electrons) the shot-noise variance gain^2 * electrons: readout dominates.
  Every 0.4 eV bin of the Bayesian fit regions still holds > 20 electrons (its Gaussian
  regime).
- ``default``: the study's instrument and camera.
- ``high``: 20x the default dose.  A 16-bit ADC would saturate (the fast path masks and
  flags such rows); a 24-bit ADC keeps the image usable so that the statistics of very
  small errors (where model inadequacy would show) are tested.
"""

import dataclasses

from sreels.config import Detector, Instrument, Scenario

DOSE = Instrument().dose_e_per_row_s

#: the noise regimes test the detector model (shot noise, gain, readout, PSF), single scattering;
#: plural scattering and the low-loss window are tested by tests/inference/test_fast_accuracy.py and
#: test_lowloss.py at t/lambda 0.3-0.9
SINGLE = dict(plural_scattering=False, lowloss_window=False)
REGIMES = {
    "low": (Instrument(dose_e_per_row_s=DOSE / 20, **SINGLE), Detector(readout_noise_counts=30.0)),
    "default": (Instrument(**SINGLE), Detector()),
    "high": (Instrument(dose_e_per_row_s=DOSE * 20, **SINGLE), Detector(adc_max_counts=2**24)),
}

#: The fast path's test image: 48 rows of 20 nm from the Pt interface into the parent
#: (0-940 nm: electrode, Ti3+ boundary, two AlPO4 grains, and a parent third at c_Li = 1 + 1e-5).
FAST_SCENARIO = Scenario(rows=48, row_nm=20.0, first_row_nm=0.0)


def regime(name):
    inst, det = REGIMES[name]
    return dataclasses.replace(inst), dataclasses.replace(det)


#: Ti-L2,3 / O-K window exposed 0.15 s instead of 30 s: the Ti amount per row is then as
#: uncertain as the Li-K amount (median ratio of relative errors 1.3, against 0.09 by default),
#: so the Li-per-Ti error must carry the Ti term.
TI_SCARCE = dataclasses.replace(Instrument(**SINGLE), windows=(Instrument().windows[0],
                                                               dataclasses.replace(Instrument().windows[1],
                                                                                   exposure_s=0.15)))
