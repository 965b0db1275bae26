"""Scenario + instrument + detector + generator -> spectrum images and their truth."""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft

from ..axes import EnergyAxis, PositionAxis
from ..config import LOWLOSS_NAME, Config, Detector, Instrument, Scenario
from ..errors import SreelsInputError
from ..resources import check_memory, simulate_bytes
from .detector import POISSON_EXACT_BELOW_E, Readout, apply_detector, counts_plan, expected_counts
from .instrument import PaddedGrid, blur_rows, energy_distortion, padded_grid
from .lowloss import impulse_tf, inside_t_over_lambda, lowloss_electrons, row_scattering
from .model import RowState, WindowModel, _block, plural_fft_length, row_kernel, shallow_edges
from .profiles import Profiles, build_profiles, position_axis


@dataclass(frozen=True)
class WindowImage:
    """One recorded window: counts (rows, channels) on ``energy`` x ``position``."""

    name: str
    energy: EnergyAxis
    counts: np.ndarray
    electrons: np.ndarray   # expected electrons per pixel (before the camera)
    detector: Detector
    saturated: np.ndarray
    sampling: dict | None = None   # how the electron counts were drawn (None: noise-free)

    @property
    def expected_counts(self) -> np.ndarray:
        """Noise-free counts (computed on demand)."""
        return expected_counts(self.electrons, self.detector)


@dataclass(frozen=True)
class Simulation:
    config: Config
    position: PositionAxis
    profiles: Profiles
    shift_ev: np.ndarray
    windows: dict[str, WindowImage]
    rng_record: dict
    noise_free: bool
    timings_s: dict = field(default_factory=dict)
    lowloss_truth: dict = field(default_factory=dict)   # per-row truth of the low-loss window

    def truth_columns(self) -> dict[str, np.ndarray]:
        """Per-row truth; ``*_row`` columns are what a noise-free per-row measurement sees."""
        cols = self.profiles.as_columns()
        cols["in_pt"] = cols["in_pt"].astype(int)
        cols["energy_shift_ev"] = self.shift_ev
        cols["zlp_shift_ev"] = self.shift_ev  # the ZLP line moves with the edges (maximum at the shift)
        # what the log-ratio method measures: ln(I_t / I_0) of the low-loss window (I_t its noise-free
        # counts before the blur along y, I_0 the unscattered exp(-t/lambda - sum n sigma)); without a
        # low-loss window the plasmons' t/lambda
        cols["t_over_lambda"] = self.lowloss_truth.get(
            "t_over_lambda", row_scattering(self.profiles, self.config.instrument)[0])
        # every inelastic loss, -ln(I_0 / I_total): what a log-ratio over an unlimited window would read
        cols["t_over_lambda_total"] = self.lowloss_truth.get("t_over_lambda_total", cols["t_over_lambda"])
        cols.update(as_measured(self.profiles, self.config.instrument.spatial_blur_fwhm_nm,
                                self.config.scenario.row_nm))
        return cols


def as_measured(p: Profiles, blur_fwhm_nm: float, row_nm: float) -> dict[str, np.ndarray]:
    """Profiles as a noise-free row sees them after the blur along y: intensity-weighted
    averages over neighbouring rows (Li per Ti atom, Ti3+ per Ti atom, peak energies per
    O atom).  Linear estimators recover these exactly; the unblurred profiles differ from
    them only where a profile changes over a few rows."""
    from .material import density_per_nm3
    from .instrument import blur_rows

    def avg(value, weight):
        num = blur_rows((np.nan_to_num(value) * weight)[:, None], blur_fwhm_nm, row_nm)[:, 0]
        den = blur_rows(weight[:, None], blur_fwhm_nm, row_nm)[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):  # blurred Pt rows see their neighbours
            return np.where(den > 1e-3 * np.max(den), num / den, np.nan)

    host_t = p.host_fraction * p.thickness_nm
    n_o = (density_per_nm3("O") * p.host_fraction + density_per_nm3("O", "AlPO4")
           * np.where(p.in_pt, 0.0, 1.0 - p.host_fraction)) * p.thickness_nm
    eb = avg(p.peak_b_ev, n_o)
    n_li = density_per_nm3("Li") * p.li_rel * host_t
    with np.errstate(invalid="ignore", divide="ignore"):
        li_per_o = np.where(n_o > 0, n_li / n_o, np.nan)
    return {
        "li_rel_row": avg(p.li_rel, host_t),
        # what the Li-K / O-K route reads (every O taken as the host's: 12 O per formula unit)
        "li_per_fu_o_row": 12.0 * avg(li_per_o, n_o),
        "ti3_fraction_row": avg(p.ti3_fraction, host_t),
        "peak_a_ev_row": avg(p.peak_a_ev, n_o * p.peak_a_rel),
        "peak_b_ev_row": eb,
        "r_oo_nm_row": np.sqrt(2.820 / (eb - 529.0)),
    }


def make_rng(seed) -> tuple[np.random.Generator, dict]:
    """A Generator and a JSON record that reproduces it.

    ``seed`` may be an int, a ``numpy.random.Generator`` (its starting state is
    recorded) or None (fresh OS entropy, recorded so the run can be repeated).
    """
    if isinstance(seed, np.random.Generator):
        return seed, {"bit_generator_state": seed.bit_generator.state}
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SreelsInputError(f"seed = {seed!r}: expected a non-negative integer (any size)")
    return np.random.default_rng(int(seed)), {"seed": int(seed)}


def lowloss_axis(instrument: Instrument) -> EnergyAxis:
    """The low-loss window's axis (the core-loss windows' dispersion)."""
    return EnergyAxis(instrument.lowloss_offset_ev, instrument.windows[0].scale_ev, instrument.lowloss_channels)


def window_models(instrument: Instrument) -> dict[str, WindowModel]:
    """The kernels of every window (:class:`WindowModel`): built once per instrument and cached
    (they depend on nothing else and are only read), so a plain :func:`simulate` after the first
    with the same instrument does not rebuild them."""
    return dict(_window_models(instrument))


@functools.lru_cache(maxsize=8)
def _window_models(instrument: Instrument) -> tuple:
    return tuple((w.name, WindowModel(w, instrument)) for w in instrument.windows)


def lowloss_grid(instrument: Instrument):
    """The low-loss window's padded grid: damped, of the core-loss windows' FFT length, with plural
    scattering (it then shares their rows' kernel, :func:`.model.row_kernel`)."""
    axis = lowloss_axis(instrument)
    if not instrument.plural_scattering:
        return padded_grid(axis, plural=True)
    return padded_grid(axis, plural=True, damped=True, n_fft=plural_fft_length(instrument, axis.scale_ev))


@functools.lru_cache(maxsize=1)
def _blas():
    """A threadpoolctl controller (built once: limiting through it costs ~0.03 ms, a fresh
    ``threadpool_limits`` ~2 ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@dataclass(frozen=True)
class ImpulseGroup:
    """Windows that hold only the incident beam's own losses (the low-loss window, and a core-loss window
    below 150 eV whose background is the low loss's tail): one impulse at 0 eV through the rows'
    kernel, one inverse FFT on a common damped grid for all of them, each window a crop of it."""

    grid: PaddedGrid
    kernel: object
    crops: dict        # name -> slice of the common grid
    factors: dict      # name -> electrons per row x channel width (eV)


def impulse_group(models: dict[str, WindowModel], instrument: Instrument, ll_grid=None) -> ImpulseGroup | None:
    """The :class:`ImpulseGroup` of these windows, or None if fewer than two share a kernel and fit on
    one grid of its length (channels aligned, 25.6 eV below the lowest and above the highest)."""
    from .instrument import PAD_HI_EV

    if not instrument.plural_scattering:
        return None
    axes, kernels, factors = {}, set(), {}
    for name, m in models.items():
        if m.lowloss_tail:
            axes[name], factors[name] = m.axis, instrument.dose_e_per_row_s * m.window.exposure_s * m.axis.scale_ev
            kernels.add(m.kernel)
    if ll_grid is not None:
        axes[LOWLOSS_NAME] = ll_grid.window
        factors[LOWLOSS_NAME] = instrument.dose_e_per_row_s * instrument.lowloss_exposure_s * ll_grid.window.scale_ev
        kernels.add(row_kernel(instrument, ll_grid.window.scale_ev, ll_grid.n_fft))
    if len(axes) < 2 or len(kernels) != 1:
        return None
    kernel = kernels.pop()
    de, n = kernel.grid.window.scale_ev, kernel.grid.n_fft
    e0 = min(a.offset_ev for a in axes.values()) - PAD_HI_EV
    crops = {}
    for name, a in axes.items():
        i0 = (a.offset_ev - e0) / de
        if abs(i0 - round(i0)) > 1e-6 or a.scale_ev != de:
            return None
        crops[name] = slice(int(round(i0)), int(round(i0)) + a.size)
    if max(c.stop for c in crops.values()) + int(np.ceil(PAD_HI_EV / de)) > n:
        return None
    return ImpulseGroup(PaddedGrid(EnergyAxis(e0, de, n), 0, n, kernel.grid.damping_per_ev), kernel, crops, factors)


#: The resolution's transfer function at the Nyquist frequency of the grid the expectation is computed on
#: stays below this (:func:`oversampling`).  The kernels are evaluated as continuous transforms at the grid's
#: frequencies; a ZLP narrow against the channels is not band-limited there, and the damped grid's undamping
#: (up to 1 / WRAP_SUPPRESSION = 1e5 at its far end) amplifies the aliased part: at 0.3 eV/channel and a 0.5 eV
#: ZLP (R(f_N) = 0.085) the low-loss window held 17 % too many electrons and t/lambda read 0.69 for 0.54
#: (0.25 eV/channel: +1 %, 0.1 eV: 2e-10, exact).
ALIAS_LIMIT = 1e-7


def oversampling(instrument: Instrument) -> int:
    """Sub-channels per channel on which :func:`expected_electrons` computes the windows (then summed, as a
    detector channel integrates its width): 1 where the resolution's transfer function at the channels' own
    Nyquist frequency is below :data:`ALIAS_LIMIT` (0.1 eV/channel at 0.5 eV FWHM), else the fewest that make it
    so (3 at 0.25-0.3 eV/channel)."""
    de = max(w.scale_ev for w in instrument.windows)
    sigma = instrument.resolution_fwhm_ev / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    for k in range(1, 33):
        if np.exp(-2.0 * (np.pi * sigma * k / (2.0 * de)) ** 2) < ALIAS_LIMIT:
            return k
    return 32


def fine_instrument(instrument: Instrument, k: int) -> Instrument:
    """The instrument with every window (and the low-loss window) on ``k`` sub-channels per channel, centred
    so that each group of ``k`` sums to the channel it replaces."""
    def off(offset, de):
        return offset - (k - 1) * de / (2 * k)
    ws = tuple(dataclasses.replace(w, offset_ev=off(w.offset_ev, w.scale_ev), scale_ev=w.scale_ev / k,
                                   channels=w.channels * k) for w in instrument.windows)
    return dataclasses.replace(instrument, windows=ws, lowloss_channels=instrument.lowloss_channels * k,
                               lowloss_offset_ev=off(instrument.lowloss_offset_ev, instrument.windows[0].scale_ev))


def expected_electrons(models: dict[str, WindowModel], state: RowState, instrument: Instrument, row_nm: float,
                       block_rows: int = 512) -> tuple[dict, dict]:
    """Expected electrons of every window (and the low-loss window), blurred along y.

    Where the channels are coarse against the resolution (:func:`oversampling`), on sub-channels summed per
    channel (``models`` are then the sub-channels', built here).

    Rows go through the FFT stage in blocks of ``block_rows``; in each block the rows' kernel
    (:class:`.lowloss.RowKernel`) is evaluated once for all windows that share it, and the windows of
    the incident beam's own losses come from one inverse FFT (:class:`ImpulseGroup`).  BLAS runs
    single-threaded (small products; its spinning threads cost more than they give).  Returns
    ({name: (axis, electrons)}, {"t_over_lambda": ...} of the low-loss window or {})."""
    k = oversampling(instrument)
    if k > 1:
        fine = fine_instrument(instrument, k)
        el, truth = expected_electrons(window_models(fine), state, fine, row_nm, block_rows)
        axes = {w.name: EnergyAxis(w.offset_ev, w.scale_ev, w.channels) for w in instrument.windows}
        axes[LOWLOSS_NAME] = lowloss_axis(instrument)
        return {name: (axes[name], e.reshape(e.shape[0], -1, k).sum(-1)) for name, (_, e) in el.items()}, truth
    with _blas().limit(limits=1, user_api="blas"):
        return _expected_electrons(models, state, instrument, row_nm, block_rows)


def _expected_electrons(models, state, instrument, row_nm, block_rows):
    rows = state.li_rel.shape[0]
    out = {name: np.empty((rows, m.axis.size)) for name, m in models.items()}
    truth = {}
    ll_grid = None
    if instrument.lowloss_window:
        ll_grid = lowloss_grid(instrument)
        ll_kernel = row_kernel(instrument, ll_grid.window.scale_ev, ll_grid.n_fft) \
            if instrument.plural_scattering else None
        out[LOWLOSS_NAME] = np.empty((rows, ll_grid.window.size))
        n_e = instrument.dose_e_per_row_s * instrument.lowloss_exposure_s
        shallow = shallow_edges(instrument)
        truth["t_over_lambda"] = inside_t_over_lambda(ll_grid, instrument, state, shallow)
    group = impulse_group(models, instrument, ll_grid)
    grouped = group.crops if group is not None else {}
    for i in range(0, rows, block_rows):
        sl = slice(i, i + block_rows)
        b = _block(state, sl)
        tfs = {}   # the rows' kernel of each shared RowKernel, evaluated once per block

        def tf_of(kernel, fallback):
            if kernel is None:
                return fallback(b)
            if id(kernel) not in tfs:
                tfs[id(kernel)] = kernel.transfer(b)
            return tfs[id(kernel)]

        if group is not None:
            g = group.grid
            k = sfft.irfft(tf_of(group.kernel, None) * impulse_tf(g)[None, :], n=g.n_fft, axis=-1, workers=-1)
            k *= g.undamp()
            for name, crop in grouped.items():
                np.multiply(k[:, crop], group.factors[name], out=out[name][sl])
                np.clip(out[name][sl], 0.0, None, out=out[name][sl])
        for name, m in models.items():
            if name not in grouped:
                out[name][sl] = m.block_electrons(b, tf_of(m.kernel, m.transfer))
        if instrument.lowloss_window and LOWLOSS_NAME not in grouped:
            tf = tf_of(ll_kernel, lambda _: None)
            out[LOWLOSS_NAME][sl] = lowloss_electrons(ll_grid, instrument, b, n_e, shallow, ll_kernel, tf).electrons
    axes = {name: m.axis for name, m in models.items()}
    if instrument.lowloss_window:
        axes[LOWLOSS_NAME] = ll_grid.window
        if ll_kernel is not None:  # ln(I_t / I_0) of the window exactly: I_0 / n_e = exp(-t/lambda - sum n sigma)
            truth["t_over_lambda"] = np.log(out[LOWLOSS_NAME].sum(1) / n_e) - ll_kernel.coefficients(state)[1]
    kernels = [m.kernel for m in models.values() if m.kernel is not None]
    if kernels:   # every loss: -ln(I_0 / n_e), the plasmons' t/lambda plus the shallow edges' whole cross-sections
        truth["t_over_lambda_total"] = -kernels[0].coefficients(state)[1]
    return {name: (axes[name], blur_rows(img, instrument.spatial_blur_fwhm_nm, row_nm))
            for name, img in out.items()}, truth


#: Bound of :func:`_cached_expectation`'s memory (bytes of expected electrons held) and of its entries.
EXPECTATION_CACHE_BYTES = 256 * 2**20
EXPECTATION_CACHE_ENTRIES = 4
_expectation_cache: OrderedDict = OrderedDict()
_expectation_lock = threading.Lock()


def clear_expectation_cache() -> None:
    """Forget the noise-free expectations :func:`simulate` keeps (see :func:`_cached_expectation`)."""
    with _expectation_lock:
        _expectation_cache.clear()


def _expectation_key(scenario: Scenario, instrument: Instrument, models: dict):
    """What the expected electrons depend on: the scenario (and its profile table's file, by path,
    size and modification time), the instrument and the kernels' identity; None if not hashable."""
    table = None
    if scenario.profile_table:
        try:
            st = os.stat(scenario.profile_table)
        except OSError:
            return None
        table = (os.path.abspath(scenario.profile_table), st.st_size, st.st_mtime_ns)
    key = (scenario, table, instrument, tuple((k, id(m)) for k, m in models.items()))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _cached_expectation(scenario: Scenario, instrument: Instrument, models: dict, state: RowState):
    """:func:`expected_electrons`, computed once per scenario, instrument and kernels.

    The expected image depends on nothing random (profiles, grains, thickness, energy distortion and
    drift are all deterministic functions of the scenario and instrument), so repeated simulations of
    one configuration with other seeds reuse it.  Held: up to :data:`EXPECTATION_CACHE_ENTRIES`
    configurations and :data:`EXPECTATION_CACHE_BYTES` bytes (least recently used dropped first;
    larger images are not kept), with references to the kernels they were computed with (so their
    ids stay unique).  The electron arrays are read-only (shared by every result of the configuration);
    the per-row truth is copied.  Returns (electrons, truth, plans): ``plans`` the
    :class:`.detector.CountsPlan` of each window (by name and switch-over), kept with the expectation
    (filled by :func:`_readouts`)."""
    key = _expectation_key(scenario, instrument, models)
    if key is not None:
        with _expectation_lock:
            hit = _expectation_cache.get(key)
            if hit is not None:
                _expectation_cache.move_to_end(key)
                return dict(hit[0]), {k: np.array(v) for k, v in hit[1].items()}, hit[4]
    electrons, truth = expected_electrons(models, state, instrument, scenario.row_nm)
    for _axis, el in electrons.values():
        el.setflags(write=False)
    # the electrons and, made at the first readout, their counts plans (at most ~2x the electrons)
    size = 3 * sum(el.nbytes for _axis, el in electrons.values())
    plans = {}
    if key is not None and size <= EXPECTATION_CACHE_BYTES:
        with _expectation_lock:
            _expectation_cache[key] = (electrons, truth, size, tuple(models.values()), plans)
            while (len(_expectation_cache) > EXPECTATION_CACHE_ENTRIES
                   or sum(v[2] for v in _expectation_cache.values()) > EXPECTATION_CACHE_BYTES):
                _expectation_cache.popitem(last=False)
    return dict(electrons), {k: np.array(v) for k, v in truth.items()}, plans


def _pool() -> ThreadPoolExecutor:
    """Threads for the windows' detector readouts (numpy's generators, ufuncs and scipy.ndimage release
    the GIL): at most one per core, and no more than a default image has windows.  One pool per
    process: a forked child (multiprocessing's fork) inherits the parent's pool without its threads,
    and gets its own."""
    return _pool_of(os.getpid())


@functools.lru_cache(maxsize=1)
def _pool_of(pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, min(3, os.cpu_count() or 1)), thread_name_prefix="sreels-detector")


def _readouts(electrons: dict, detector: Detector, gen: np.random.Generator | None, exact_below: float,
              plans: dict) -> dict[str, Readout]:
    """Every window's detector readout (``gen`` None: noise-free expected counts), the windows in threads.

    Each window draws from its own stream, seeded by 128 bits taken from ``gen`` in the windows' order,
    so the images are the same whatever the number of threads or the order they run in.  The streams
    are ``numpy.random.SFC64`` (C. Doty-Humphrey's Small Fast Chaotic generator; numpy's docs: expected
    period ~2^255, a 64-bit counter in the state, so distinct seeds do not meet for at least 2^64
    draws): its float32 normals, the detector's main cost, took ~25 % less CPU than PCG64's here
    (7.5 against 10 ms per 330 x 2048, loaded machine).  The counts plan of a window
    (:func:`.detector.counts_plan`) is taken from ``plans`` or made and put there."""
    names = list(electrons)
    seeds = None if gen is None else gen.integers(0, 2**32, size=(len(names), 4), dtype=np.uint32)

    def one(i):
        name = names[i]
        el = electrons[name][1]
        if gen is None:
            mean = expected_counts(el, detector)
            return Readout(mean, np.zeros(mean.shape, bool), None)
        plan = plans.get((name, exact_below))
        if plan is None:
            plan = plans[(name, exact_below)] = counts_plan(el, exact_below)
        out = apply_detector(el, detector, np.random.Generator(np.random.SFC64(seeds[i])), exact_below, plan)
        return dataclasses.replace(out, sampling={**out.sampling, "noise_stream": (
            f"numpy SFC64 seeded by the {i + 1}. of {len(names)} uint32 x 4 rows drawn by "
            "rng.integers(0, 2**32, size=(windows, 4), dtype=uint32) (windows in output order)")})

    # the largest share first (the low-loss window: mostly exact draws): the others fill the second thread
    order = sorted(range(len(names)), key=lambda i: names[i] != LOWLOSS_NAME)
    pool = _pool()
    if pool._max_workers < 2 or len(names) < 2:
        return {names[i]: one(i) for i in range(len(names))}
    futures = {i: pool.submit(one, i) for i in order}
    return {names[i]: futures[i].result() for i in range(len(names))}


def simulate(scenario: Scenario | None = None, instrument: Instrument | None = None,
             detector: Detector | None = None, rng=None, noise_free: bool = False,
             models: dict[str, WindowModel] | None = None,
             poisson_exact_below: float = POISSON_EXACT_BELOW_E) -> Simulation:
    """Simulate every energy window of an SR-EELS spectrum image.

    Parameters
    ----------
    scenario, instrument, detector
        Descriptions; None takes the defaults (the source study's interface).
    rng : int, numpy.random.Generator or None
        Source of every random draw (recorded in the result).  Each window draws from its own stream
        seeded from it (:func:`_readouts`; the windows' readouts run in threads).
    noise_free : bool
        Return expected counts instead of a detector readout.
    models : dict, optional
        Pre-built :class:`WindowModel` kernels (reuse them across many simulations).
    poisson_exact_below : float
        Expected electrons per pixel below which counts are drawn exactly from a Poisson distribution,
        above by its Cornish-Fisher approximation (:func:`.detector.poisson_counts`; ``inf``: exact
        everywhere).  Recorded per window in ``WindowImage.sampling`` and the output metadata.
    """
    t0 = time.perf_counter()
    scenario = scenario or Scenario()
    instrument = instrument or Instrument()
    detector = detector or Detector()
    check_memory(simulate_bytes(scenario.rows, sum(w.channels for w in instrument.windows)),
                 f"simulating {scenario.rows} rows x {sum(w.channels for w in instrument.windows)} channels")
    gen, record = make_rng(rng)
    models = models or window_models(instrument)
    t1 = time.perf_counter()
    profiles = build_profiles(scenario)
    shift = energy_distortion(profiles.y_nm, instrument.energy_distortion_ev, instrument.drift_ev)
    state = RowState.from_profiles(profiles, shift)
    images, timings = {}, {"kernels": t1 - t0}
    ta = time.perf_counter()
    models = {w.name: models[w.name] for w in instrument.windows}
    electrons, ll_truth, plans = _cached_expectation(scenario, instrument, models, state)
    timings["expected_electrons"] = time.perf_counter() - ta
    ta = time.perf_counter()
    readouts = _readouts(electrons, detector, None if noise_free else gen, poisson_exact_below, plans)
    timings["detector"] = time.perf_counter() - ta
    for name, (axis, el) in electrons.items():
        out = readouts[name]
        images[name] = WindowImage(name, axis, out.counts, el, detector, out.saturated, out.sampling)
    timings["total"] = time.perf_counter() - t0
    cfg = Config(scenario, instrument, detector)
    return Simulation(cfg, position_axis(scenario), profiles, shift, images, record, noise_free, timings, ll_truth)
