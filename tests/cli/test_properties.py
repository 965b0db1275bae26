"""Property-based checks (Hypothesis): the scenario parser, the readers and the fit's input
checks either succeed or raise :class:`SreelsInputError`, never anything else.

The default suite runs a bounded number of examples per target; ``pytest -m slow`` runs
10 000 per target (the fit itself too: ~30 min on one core).
"""

import contextlib
import dataclasses
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sreels.axes import EnergyAxis, PositionAxis
from sreels.config import Config, Detector, Grain, Instrument, Scenario, Window, config_from_dict, load_config
from sreels.errors import SreelsInputError
from sreels.inference.fast import FitSettings, fit_image
from sreels.inference.load import WindowData, check_fit_input, from_signal_dict, read_file

FAST = 60
SLOW = 10_000
_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)

# ------------------------------------------------------------------ strategies
_FIELDS = {cls: [f.name for f in dataclasses.fields(cls)] for cls in (Scenario, Instrument, Detector, Window, Grain)}
_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**80, 2**80),
                     st.sampled_from([0, 1, 2, 64, 2048, 1e5, 1e8, -1, 0.5, 1e-300, 0.28, 529.0]))
_scalars = st.one_of(_numbers, st.booleans(), st.text(max_size=8),
                     st.sampled_from(["threshold", "position", "linear", "vegard", "Ti-L23", "O-K", "low"]))


def _table(cls, depth):
    keys = st.one_of(st.sampled_from(_FIELDS[cls]), st.text(min_size=1, max_size=6))
    return st.dictionaries(keys, _values(depth), max_size=5)


def _values(depth):
    if depth <= 0:
        return _scalars
    return st.one_of(
        _scalars, st.lists(_scalars, max_size=3),
        st.lists(_table(Window, depth - 1), max_size=2), st.lists(_table(Grain, depth - 1), max_size=2),
        st.dictionaries(st.text(max_size=4), _scalars, max_size=2))


_structured = st.fixed_dictionaries({}, optional={
    "scenario": _table(Scenario, 1), "instrument": _table(Instrument, 2), "detector": _table(Detector, 1)})
_configs = st.one_of(
    _structured, _structured, _structured, _structured,
    st.dictionaries(st.text(max_size=10), _values(1), max_size=3),
    _scalars, st.lists(_scalars, max_size=2))


def _finite_numbers(obj):
    if dataclasses.is_dataclass(obj):
        return all(_finite_numbers(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    if isinstance(obj, tuple):
        return all(_finite_numbers(x) for x in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


def _scenario_parser(data):
    try:
        cfg = config_from_dict(data)
    except SreelsInputError:
        return
    assert isinstance(cfg, Config) and _finite_numbers(cfg)
    assert isinstance(cfg.scenario.rows, int) and all(isinstance(w.channels, int) for w in cfg.instrument.windows)


def _toml_text(text):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.toml"
        p.write_text(text)
        with contextlib.suppress(SreelsInputError):  # a clear refusal is an allowed outcome
            load_config(p)


_SUFFIXES = [".npy", ".hspy", ".msa", ".dm3", ".dm4", ".txt"]


def _read_bytes(blob, suffix):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"x{suffix}"
        p.write_bytes(blob)
        try:
            out = read_file(p, 420.0, 0.1)
        except SreelsInputError:
            return
        for w in out:
            assert w.counts.ndim == 2 and np.isfinite(w.counts).all()


_arrays = hnp.arrays(
    dtype=st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.boolean_dtypes(), hnp.complex_number_dtypes(),
                    hnp.unicode_string_dtypes(max_len=2), hnp.datetime64_dtypes()),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))


def _read_npy(arr, lazy):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.npy"
        np.save(p, arr)
        try:
            out = read_file(p, 420.0, 0.1, lazy=lazy)
        except SreelsInputError:
            return
        assert len(out) == 1 and out[0].counts.ndim == 2


_axis = st.fixed_dictionaries({"name": st.text(max_size=3)}, optional={
    "units": st.sampled_from(["eV", "keV", "nm", "", "µm", "s", 3]), "navigate": st.booleans(),
    "scale": _numbers, "offset": _numbers, "size": st.integers(0, 5)})


@st.composite
def _signals(draw):
    arr = draw(_arrays)
    n = draw(st.sampled_from([arr.ndim, arr.ndim, max(arr.ndim - 1, 0), arr.ndim + 1]))
    return {"data": arr, "axes": draw(st.lists(_axis, min_size=n, max_size=n)),
            "metadata": draw(st.one_of(st.just({}), st.dictionaries(st.text(max_size=3), _scalars, max_size=2)))}


def _signal_dict(sig):
    try:
        w = from_signal_dict(sig, "sig")
    except SreelsInputError:
        return
    assert w.counts.ndim == 2 and w.counts.shape[1] == w.energy.size


_settings = st.builds(
    FitSettings, gain_counts_per_e=st.one_of(st.none(), _numbers), readout_noise_counts=st.one_of(st.none(), _numbers),
    saturation_counts=st.one_of(st.none(), _numbers), resolution_fwhm_ev=_numbers,
    psf_decay=st.one_of(st.none(), _numbers), c_err_ev_nm2=_numbers,
    bin_rows=st.one_of(st.integers(-2, 5), _numbers),
    parent_nm=st.one_of(st.none(), st.tuples(_numbers, _numbers), st.lists(_numbers, max_size=3)))


@st.composite
def _windows(draw, max_rows=4):
    rows = draw(st.integers(1, max_rows))
    out = {}
    for name in draw(st.lists(st.sampled_from(["low", "high", "x"]), min_size=1, max_size=2, unique=True)):
        offset = draw(st.sampled_from([40.0, 420.0, 300.0, 1000.0]))
        scale = draw(st.sampled_from([0.1, 0.25, 1.0]))
        channels = draw(st.integers(2, 2048))
        r = draw(st.sampled_from([rows, rows, rows + 1]))
        fill = draw(st.sampled_from(["poisson", "zero", "const", "huge", "negative", "nan", "spiky"]))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        counts = {"poisson": lambda: rng.poisson(100.0, (r, channels)).astype(float),
                  "zero": lambda: np.zeros((r, channels)), "const": lambda: np.full((r, channels), 7.0),
                  "huge": lambda: np.full((r, channels), 1e30), "negative": lambda: -rng.random((r, channels)),
                  "nan": lambda: np.full((r, channels), np.nan),
                  "spiky": lambda: rng.pareto(0.5, (r, channels)) * 10}[fill]()
        out[name] = WindowData(name, EnergyAxis(offset, scale, channels), counts, PositionAxis(0.0, 5.7, r), name)
    return out


def _fit_checks(windows, s):
    try:
        check_fit_input(windows, s)
    except SreelsInputError:
        return


def _fit(windows):
    try:
        res = fit_image(windows, FitSettings())
    except SreelsInputError:
        return
    assert len(res.status) == next(iter(windows.values())).counts.shape[0]


# ------------------------------------------------------------------ the targets
TARGETS = {
    "scenario_parser": (given(_configs), _scenario_parser),
    "toml_text": (given(st.text(max_size=200)), _toml_text),
    "read_bytes": (given(st.binary(max_size=400), st.sampled_from(_SUFFIXES)), _read_bytes),
    "read_npy": (given(_arrays, st.booleans()), _read_npy),
    "signal_dict": (given(_signals()), _signal_dict),
    "fit_checks": (given(_windows(), _settings), _fit_checks),
}


def _make(name, n, slow):
    giv, fn = TARGETS[name]
    test = settings(max_examples=n, **_COMMON)(giv(fn))
    return pytest.mark.slow(test) if slow else test


for _name in TARGETS:
    globals()[f"test_{_name}_fast"] = _make(_name, FAST, False)
    globals()[f"test_{_name}_slow"] = _make(_name, SLOW, True)

test_fit_fast = settings(max_examples=8, **_COMMON)(given(_windows(max_rows=2))(_fit))
test_fit_slow = pytest.mark.slow(settings(max_examples=SLOW, **_COMMON)(given(_windows(max_rows=3))(_fit)))
