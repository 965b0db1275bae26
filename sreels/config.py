"""Validated, frozen descriptions of what is simulated or fitted.

A TOML file has up to three tables, ``[scenario]`` (the specimen: profiles along
y), ``[instrument]`` (microscope, spectrometer and energy windows) and
``[detector]`` (the camera).  Any key left out takes the default below, which is
the source study's interface (Yamamoto et al., J. Power Sources 266 (2014) 414).
An unknown key is an error that names the key and suggests the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import SreelsInputError
from .ranges import validate_fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# ----------------------------------------------------------------- helpers
def _check(cond, where, value, expected):
    if not cond:
        raise SreelsInputError(f"{where} = {value!r}: expected {expected}")


def seed_arg(text: str) -> int:
    """``--seed``: a non-negative integer of any size (argparse ``type``)."""
    import argparse

    try:
        seed = int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected a seed >= 0") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"{seed} is negative; expected a seed >= 0 (any size)")
    return seed


# ------------------------------------------------------------- scenario parts
@dataclass(frozen=True)
class Grain:
    """An AlPO4 grain crossing the slit: it holds no Li and no Ti (Yamamoto 2014, Sec. 3.1).

    ``fraction`` is the share of the row's projected volume that is AlPO4 at the
    grain centre (Gaussian profile of FWHM ``width_nm`` along y).
    """

    center_nm: float
    width_nm: float
    fraction: float

    def __post_init__(self):
        validate_fields(self)


@dataclass(frozen=True)
class Scenario:
    """The specimen along the slit; y = 0 at the Pt / electrode interface, y > 0 into the electrolyte.

    Defaults reproduce the source study (Yamamoto et al. 2014, Sec. 3.2-3.3): 330
    rows of 5.7 nm (1880 nm), a ~400 nm electrode in which the Li concentration
    relative to the parent electrolyte rises gradually toward Pt to ~8.5, Ti3+
    where it exceeds ~6 (boundary ~160 nm from Pt), O-O distance 0.280 nm in
    the parent rising to ~0.310 nm, peak "a" shifted -0.9 eV (Ti3+ region) and
    -0.3 eV (Ti4+ part of the electrode), with a higher peak "a" in the Ti4+
    electrode than in the parent and a lower one in the Ti3+ region.
    """

    rows: int = 330
    row_nm: float = 5.7
    first_row_nm: float = -45.6          # 8 rows inside the Pt collector
    thickness_nm: float = 100.0          # FIB lamella, "about 100 nm" (Sec. 2.1)
    thickness_slope_per_um: float = 0.0  # relative thickness change per um along y
    # Li profile: c(y) = 1 + (li_max_rel - 1) g(y), g an erfc step that reaches
    # 2.3 % of its height at y = electrode_width_nm and 1 at y = 0.
    electrode_width_nm: float = 400.0
    li_max_rel: float = 8.5
    li_rise_nm: float = 100.0            # Gaussian sigma of the erfc step (c_Li = 6 at ~160 nm)
    # Ti3+ fraction: "threshold" -> logistic in c_Li; "position" -> erfc step in y.
    ti3_mode: str = "threshold"
    ti3_li_threshold_rel: float = 6.0
    ti3_li_width_rel: float = 0.25
    ti3_boundary_nm: float = 160.0
    ti3_width_nm: float = 15.0
    # O-O distance from c_Li (sreels.structures.mapping models)
    r_oo_model: str = "linear"
    r_oo_parent_nm: float = 0.280
    # linear law: 0.280 -> 0.310 nm for c_Li 1 -> 8.5 in the study (Fig. 6a, b): 4 pm per unit c_Li
    r_oo_slope_nm: float = 0.004
    # O-K peak "a": position 538 eV in the parent (Sec. 3.3)
    peak_a_ev: float = 538.0
    peak_a_shift_electrode_ev: float = -0.3
    peak_a_shift_ti3_ev: float = -0.9
    peak_a_gain_electrode: float = 0.25  # relative intensity change, Ti4+ electrode
    peak_a_gain_ti3: float = 0.0         # relative intensity change, Ti3+ region
    grains: tuple[Grain, ...] = (Grain(700.0, 40.0, 0.30), Grain(1150.0, 60.0, 0.40),
                                 Grain(250.0, 30.0, 0.25))
    profile_table: str = ""              # optional CSV: y_nm, li_rel[, ti3_fraction, r_oo_nm, thickness_nm]

    def __post_init__(self):
        validate_fields(self)
        object.__setattr__(self, "rows", int(self.rows))
        _check(isinstance(self.grains, tuple) and all(isinstance(g, Grain) for g in self.grains),
               "Scenario.grains", self.grains, "a tuple of Grain")
        from .structures.mapping import MODELS
        _check(self.r_oo_model in MODELS, "Scenario.r_oo_model", self.r_oo_model, f"one of {MODELS}")
        for li in (1.0, self.li_max_rel):
            r = self.r_oo_parent_nm + self.r_oo_slope_nm * (li - 1.0)
            _check(0.15 <= r <= 0.6, "Scenario.r_oo_slope_nm", self.r_oo_slope_nm,
                   f"a slope that keeps R_OO in [0.15, 0.6] nm up to li_max_rel = {self.li_max_rel:g} "
                   f"(gives {r:.4g} nm)")
        _check(self.ti3_mode in ("threshold", "position"), "Scenario.ti3_mode", self.ti3_mode,
               "'threshold' or 'position'")
        _check(abs(self.thickness_slope_per_um) < 1 / (self.rows * self.row_nm * 1e-3),
               "Scenario.thickness_slope_per_um", self.thickness_slope_per_um,
               "a slope that keeps the thickness positive over the image")


@dataclass(frozen=True)
class Window:
    """One recorded energy window (its own exposure and energy offset)."""

    name: str
    offset_ev: float
    channels: int = 2048
    scale_ev: float = 0.1            # the study's 0.1 eV/channel (Sec. 2.2)
    exposure_s: float = 30.0         # the study's exposure (Sec. 3.2)
    background_r: float = 3.0        # power-law exponent r of A E^-r
    background_per_ev: float = 1e-3  # B at background_ref_ev, per eV per incident e per 100 nm
    background_ref_ev: float = 60.0
    edges: tuple[str, ...] = ()

    def __post_init__(self):
        _check(isinstance(self.name, str) and self.name.isidentifier(), "Window.name", self.name,
               "a short identifier (letters, digits, _)")
        validate_fields(self, f"Window[{self.name}]")
        object.__setattr__(self, "channels", int(self.channels))

    @property
    def end_ev(self) -> float:
        return self.offset_ev + self.scale_ev * (self.channels - 1)


DEFAULT_WINDOWS = (
    # Li-K on the tails of Ge-M4,5 and Ti-M2,3, followed by Al-L2,3, Si-L2,3 and P-L2,3.
    # Shorter exposure than the high window: the plasmon tail would saturate the CCD in 30 s.
    Window("low", 40.0, exposure_s=0.5, background_r=3.0, background_per_ev=1.2e-3, background_ref_ev=60.0,
           edges=("Ge-M45", "Ti-M23", "Li-K", "Al-L23", "Si-L23", "P-L23")),
    Window("high", 420.0, background_r=3.2, background_per_ev=2e-5, background_ref_ev=450.0,
           edges=("Ti-L23", "O-K")),
)


#: name of the low-loss (zero-loss) window, in simulations and in measurements
LOWLOSS_NAME = "lowloss"


@dataclass(frozen=True)
class Instrument:
    """Microscope and spectrometer (HF3300 at 300 kV with a GIF Quantum ER in the study, Sec. 2.2)."""

    beam_energy_kev: float = 300.0
    collection_semiangle_mrad: float = 10.0
    resolution_fwhm_ev: float = 0.5      # cold-FEG ZLP 0.3-0.5 eV (DESIGN.md; not verified for the HF3300)
    dose_e_per_row_s: float = 6.0e7      # incident electrons per row per second
    energy_distortion_ev: float = 0.05   # peak-to-peak bow of the ZLP line along y (< 0.1 eV, Sec. 2.2)
    drift_ev: float = 0.0                # global shift of every row (the whole image drifts together)
    spatial_blur_fwhm_nm: float = 6.0    # slit/probe + delocalisation along y
    # plural scattering and the low-loss window: sreels.forward.lowloss (sources there)
    plural_scattering: bool = True       # Poisson in t/lambda (real lamellae: t/lambda 0.3-1)
    inelastic_mfp_nm: float = 0.0        # 0: lambda per phase (Iakoubovskii 2008); > 0: one lambda (nm)
    plasmon_ev: float = 0.0              # 0: free-electron plasmon per phase; > 0: one Drude plasmon (eV)
    plasmon_fwhm_ev: float = 10.0        # width of that one plasmon (assumed)
    zlp_tail_ev: float = 0.0             # exponential tail of the ZLP toward positive loss, e.g. 0.1 (cold FEG)
    lowloss_window: bool = True          # record the low-loss window (a DualEELS pair, as real data are)
    lowloss_offset_ev: float = -10.0
    lowloss_channels: int = 2048
    lowloss_exposure_s: float = 0.002    # ZLP maximum ~2e4 counts: below the 16-bit ADC maximum
    windows: tuple[Window, ...] = DEFAULT_WINDOWS

    def __post_init__(self):
        validate_fields(self)
        _check(isinstance(self.windows, tuple) and all(isinstance(w, Window) for w in self.windows),
               "Instrument.windows", self.windows, "a tuple of Window")
        _check(self.lowloss_offset_ev < -1.0, "Instrument.lowloss_offset_ev", self.lowloss_offset_ev,
               "an energy below -1 eV (the ZLP must be inside)")
        names = [w.name for w in self.windows]
        _check(len(names) == len(set(names)) and names, "Instrument.windows", names,
               "at least one window, with distinct names")
        _check(LOWLOSS_NAME not in names, "Instrument.windows", names,
               f"no core-loss window named {LOWLOSS_NAME!r} (the low-loss window's name)")

    def window(self, name: str) -> Window:
        for w in self.windows:
            if w.name == name:
                return w
        raise SreelsInputError(f"no energy window named {name!r}; have {[w.name for w in self.windows]}")


@dataclass(frozen=True)
class Detector:
    """A scintillator-coupled CCD as on a GIF Quantum.

    Gain and bias follow one published scintillator-CCD example (~1.55 counts per
    electron, ~252 counts bias; Sci. Rep. 2025, doi:10.1038/s41598-025-85982-4).
    The point-spread is an exponential kernel k_n ~ psf_decay^|n| along energy (rows are
    on-chip-binned groups of CCD rows); it correlates noise between neighbouring channels
    and lowers the per-pixel variance by sum(k^2).
    """

    gain_counts_per_e: float = 1.55
    readout_noise_counts: float = 3.0
    dark_offset_counts: float = 252.0
    dark_subtracted: bool = True         # Digital Micrograph subtracts the dark reference
    psf_decay: float = 0.2
    gain_nonuniformity_rel: float = 0.0  # residual after the gain reference (flat-field corrected)
    adc_max_counts: int = 65535          # 16-bit ADC
    quantise: bool = True

    def __post_init__(self):
        validate_fields(self)
        object.__setattr__(self, "adc_max_counts", int(self.adc_max_counts))
        _check(0 <= self.psf_decay < 1, "Detector.psf_decay", self.psf_decay, "a value in [0, 1)")


# ------------------------------------------------------------ TOML in / out
_TABLES = {"scenario": Scenario, "instrument": Instrument, "detector": Detector}


def _build(cls, mapping: dict, where: str):
    if not isinstance(mapping, dict):
        raise SreelsInputError(f"[{where}] must be a table, got {type(mapping).__name__}")
    valid = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in mapping.items():
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise SreelsInputError(f"unknown key {where}.{key!r}{hint} Valid keys: {', '.join(valid)}")
        kwargs[key] = _coerce(valid[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required field of a nested table
        raise SreelsInputError(f"[{where}]: {exc}") from None


def _coerce(f: dataclasses.Field, value, where: str):
    default = f.default if f.default is not dataclasses.MISSING else None
    if f.name == "grains":
        if not isinstance(value, list):
            raise SreelsInputError(f"{where} must be a list of tables, got {value!r}")
        return tuple(_build(Grain, g, f"{where}[{i}]") for i, g in enumerate(value))
    if f.name == "windows":
        if not isinstance(value, list) or not value:
            raise SreelsInputError(f"{where} must be a non-empty list of tables, got {value!r}")
        return tuple(_build(Window, w, f"{where}[{i}]") for i, w in enumerate(value))
    if f.name == "edges":
        if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
            raise SreelsInputError(f"{where} = {value!r}: expected a list of edge names such as "
                                   "[\"Ti-L23\", \"O-K\"]")
        return tuple(value)
    if f.name == "name" and not isinstance(value, str):
        raise SreelsInputError(f"{where} = {value!r}: expected a string (a short identifier)")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SreelsInputError(f"{where} = {value!r}: expected true or false")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SreelsInputError(f"{where} = {value!r}: expected a number")
        if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
            raise SreelsInputError(f"{where} = {value!r}: expected an integer")
        if isinstance(default, float):
            try:
                return float(value)
            except OverflowError:
                raise SreelsInputError(f"{where} = {value!r}: expected a finite number") from None
        return int(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise SreelsInputError(f"{where} = {value!r}: expected a string")
    return value


@dataclass(frozen=True)
class Config:
    scenario: Scenario = field(default_factory=Scenario)
    instrument: Instrument = field(default_factory=Instrument)
    detector: Detector = field(default_factory=Detector)


def config_from_dict(data: dict[str, Any], base_dir: Path | None = None) -> Config:
    """A :class:`Config` from parsed TOML (tables ``scenario``, ``instrument``, ``detector``).

    Raises
    ------
    SreelsInputError
        For anything that is not a valid configuration (names the key, the value and the range).
    """
    if not isinstance(data, dict):
        raise SreelsInputError(f"configuration must be a table of tables, got {type(data).__name__}")
    for key in data:
        if key not in _TABLES:
            near = difflib.get_close_matches(key, _TABLES, n=1)
            hint = f"; did you mean [{near[0]}]?" if near else ""
            raise SreelsInputError(f"unknown table [{key}]{hint} Valid tables: scenario, instrument, detector")
    parts = {k: _build(cls, data.get(k, {}), k) for k, cls in _TABLES.items()}
    sc = parts["scenario"]
    if sc.profile_table and base_dir is not None and not Path(sc.profile_table).is_absolute():
        parts["scenario"] = dataclasses.replace(sc, profile_table=str((base_dir / sc.profile_table).resolve()))
    return Config(**parts)


def read_toml(path: str | Path, what: str = "scenario") -> dict:
    """A TOML file as a dict, with clear errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise SreelsInputError(f"{what} file {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SreelsInputError(f"{path} is not valid TOML: {exc}") from None


def load_config(path: str | Path | None) -> Config:
    """Read a TOML file (None -> the built-in default, the source study's interface)."""
    if path is None:
        return Config()
    return config_from_dict(read_toml(path), base_dir=Path(path).parent)


def config_to_dict(cfg: Config) -> dict:
    """The fully resolved configuration as plain TOML-able data."""
    def conv(obj):
        if dataclasses.is_dataclass(obj):
            return {f.name: conv(getattr(obj, f.name)) for f in fields(obj)}
        if isinstance(obj, tuple):
            return [conv(x) for x in obj]
        return obj
    return {k: conv(getattr(cfg, k)) for k in _TABLES}


def config_to_toml(cfg: Config) -> str:
    import tomli_w
    return tomli_w.dumps(config_to_dict(cfg))
