"""Image-level prediction for the joint fit, from Fourier kernels built once.

For window w, row r and bin c (electrons, PSF removed, channels summed by ``bin``)

    mu_w(r, c) = b_w(r) P_w(r, c) + s_w [ H(r) X_w(r, c) + G(r) Y_w(r, c) ]

P_w = (E / E_ref)^-r_w (1 + shift_r r_w / E): the power-law background shape of the
forward model (:meth:`sreels.forward.model.WindowModel.background`); X_w the core loss
of one "host amount" (LASGTP, h t = 100 nm), Y_w that of AlPO4 (its Al, P and O); s_w
the window's edge scale (1 for the reference window).  b_w(r), H(r), G(r) enter
linearly and are marginalised in :mod:`.likelihood`; everything else is set by the
parameters through the row profiles of :mod:`.params`.

X and Y are built in Fourier space: the per-atom shapes of :mod:`sreels.forward.edges`
(the forward model's physics, evaluated once on a padded grid around the fit region
and transformed once), combined with per-row coefficients (c_Li, f3), the O-K peaks
"a" and "b" added analytically (a Gaussian's transform is a Gaussian times a phase),
times the resolution, the per-row shift phase and the bin's box transfer function,
then one inverse FFT of length n / 2 (ideal decimation by 2: the spectra carry nothing
above 2.5 cycles/eV once resolution-broadened) and sums of bin / 2 samples.  The blur
along y is applied to the profiles (exact for c_Li and f3, which enter linearly, where
the host amount varies slowly over the blur; second order for peak positions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import gaussian_filter1d

from ...forward import edges as ed
from ...forward.instrument import FWHM_TO_SIGMA, resolution_tf
from ...forward.material import density_per_nm3
from ...forward.model import BARN_NM2, PREPEAK_TI3_LOSS, check_window_edges
from .data import PreparedData, WindowData
from .params import ParameterSet, row_profiles

#: Padding (eV) around a fit region; the outer half is a cosine taper.
PAD_EV = 8.0
#: Order of the Taylor expansion in the row-to-row shift (bow) and its range of use (eV):
#: the neglected term is < 0.02 sigma of the shot noise at the Ti-L white lines (tested).
TAYLOR_ORDER = 4
TAYLOR_MAX_EV = 0.10
#: Gaussian peaks are evaluated within this many standard deviations (exp(-0.5 * 5.5^2) < 3e-7).
PEAK_SIGMAS = 5.5
_BLOCK = 32


def phase(x, df: float, nf: int) -> np.ndarray:
    """exp(-2 pi i f_k x) for f_k = k df, k < nf; x (...,) -> (..., nf), from two small tables."""
    x = np.asarray(x, dtype=float)[..., None]
    na = -(-nf // _BLOCK)
    t1 = np.exp(-2j * np.pi * df * _BLOCK * x * np.arange(na))
    t2 = np.exp(-2j * np.pi * df * x * np.arange(_BLOCK))
    return (t1[..., :, None] * t2[..., None, :]).reshape(*x.shape[:-1], na * _BLOCK)[..., :nf]


def _bin_sum(a, b: int):
    """Sum consecutive groups of ``b`` along the last axis (strided adds: numpy's reduction
    over a length-2 axis is ~10x slower)."""
    out = a[..., 0::b].copy()
    for q in range(1, b):
        out += a[..., q::b]
    return out


def gauss_rows(e0: float, step: float, n: int, centre, sigma) -> np.ndarray:
    """exp(-(e0 + j step - centre)^2 / (2 sigma^2)) for j < n: centre (B, R), sigma (B,) -> (B, R, n).

    Written as exp(-u0^2/2) r^j q_j with u0 = (e0 - centre) / sigma, r = exp(-u0 h),
    q_j = exp(-h^2 j^2 / 2), h = step / sigma: r^j from two small power tables, so the
    cost is a few products per element instead of an exponential."""
    c = np.asarray(centre, dtype=float)
    sg = np.asarray(sigma, dtype=float)[:, None]
    u0 = (e0 - c) / sg
    h = step / sg                                                    # (B, 1)
    j = np.arange(n)
    na = -(-n // _BLOCK)
    lr = (-u0 * h)[..., None]                                        # ln r, (B, R, 1)
    t1 = np.exp(lr * (_BLOCK * np.arange(na)))
    t2 = np.exp(lr * np.arange(_BLOCK))
    rj = (t1[..., :, None] * t2[..., None, :]).reshape(*c.shape, na * _BLOCK)[..., :n]
    q = np.exp(-0.5 * (h * j) ** 2)                                  # (B, n)
    return rj * np.exp(-0.5 * u0 * u0)[..., None] * q[:, None, :]


@dataclass(frozen=True)
class Columns:
    """Model columns of one window for a batch: background (B, R, C) and edges X, Y (B, R, C)."""

    background: np.ndarray
    host: np.ndarray
    alpo4: np.ndarray


class RegionKernels:
    """Transformed templates of one window's fit region (built once)."""

    def __init__(self, wd: WindowData, instrument):
        w = wd.window
        check_window_edges(w)
        self.wd, self.window = wd, w
        d = w.scale_ev
        b = wd.bin
        p = int(np.ceil(PAD_EV / d / b)) * b
        m = sfft.next_fast_len(-(-(wd.nbins * b + 2 * p) // b), real=True)
        m += m % 2
        self.n, self.b, self.p = m * b, b, p
        # decimate in Fourier space by 2 at most (resolution-broadened spectra carry nothing
        # above 2.5 cycles/eV), then sum groups of b / dec samples in energy space
        self.dec = 2 if b % 2 == 0 else 1
        self.group = b // self.dec
        self.nf = self.n // (2 * self.dec) + 1
        self.df = 1.0 / (self.n * d)
        self.freq = self.df * np.arange(self.nf)
        self.e0 = w.offset_ev + d * (wd.i0 - p)
        e = self.e0 + d * np.arange(self.n)
        taper = np.ones(self.n)
        nt = p // 2
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(nt) / nt)
        taper[:nt], taper[self.n - nt:] = ramp, ramp[::-1]
        beam = ed.Beam(instrument.beam_energy_kev, instrument.collection_semiangle_mrad * 1e-3)
        dose = instrument.dose_e_per_row_s * w.exposure_s
        # amplitude unit: h t = 100 nm of host; box transfer and 1/bin of the decimation folded in
        box = np.exp(2j * np.pi * self.freq[None, :] * d * np.arange(self.dec)[:, None]).sum(0)
        unit = dose * d * BARN_NM2 * 100.0 / self.dec * box

        def ft(shape):
            return sfft.rfft(shape * taper)[: self.nf] * unit

        n_host = lambda el: density_per_nm3(el)           # noqa: E731
        n_alpo = lambda el: density_per_nm3(el, "AlPO4")  # noqa: E731
        zero = np.zeros(self.nf, complex)
        self.x = {k: zero.copy() for k in ("fixed", "li", "ti4", "ti3", "pre")}
        self.y = zero.copy()
        for name in w.edges:
            if name in ("Ti-L23", "O-K"):
                continue
            spec = ed.EDGES[name]
            t = ft(spec.shape(e, beam))
            if spec.element == "Li":
                self.x["li"] += density_per_nm3("Li") * t
            else:
                self.x["fixed"] += n_host(spec.element) * t
                self.y += n_alpo(spec.element) * t
        self.has_o = "O-K" in w.edges
        if "Ti-L23" in w.edges:
            self.x["ti4"] = n_host("Ti") * ft(ed.ti4_l23(e, beam))
            self.x["ti3"] = n_host("Ti") * ft(ed.ti3_l23(e, beam))
        if self.has_o:
            cont = ft(ed.o_k_continuum(e, beam))
            self.x["fixed"] += n_host("O") * cont
            self.y += n_alpo("O") * cont
            self.x["pre"] = n_host("O") * ft(ed.o_k_prepeaks(e, beam))
            ref = ed.o_k_reference(beam)
            self.ref = ref

            def gauss_ft(height, fwhm):
                s = fwhm * FWHM_TO_SIGMA
                return height * ref * s * np.sqrt(2 * np.pi) / d * np.exp(-2 * (np.pi * s * self.freq) ** 2) * unit

            self.peak_a = gauss_ft(ed.O_PEAK_A_HEIGHT, ed.O_PEAK_A_FWHM_EV)
            self.peak_b = gauss_ft(ed.O_PEAK_B_HEIGHT, ed.O_PEAK_B_FWHM_EV)
            self.o_host, self.o_alpo = n_host("O"), n_alpo("O")
        self.templates = np.array([self.x[k] for k in ("fixed", "li", "ti4", "ti3", "pre")])
        #: templates that are not identically zero in this window (the rest are skipped)
        self.active = np.flatnonzero(np.any(self.templates != 0, axis=1))
        self.crop = slice(p // self.dec, p // self.dec + wd.nbins * self.group)
        # Taylor path: templates (X parts, then Y) and their energy derivatives (2 pi i f)^j / j!
        self.stack = np.vstack([self.templates[self.active], self.y[None]])
        jj = np.arange(TAYLOR_ORDER + 1)
        fact = np.cumprod(np.r_[1.0, np.arange(1, TAYLOR_ORDER + 1)])
        self.deriv = (2j * np.pi * self.freq[None, :]) ** jj[:, None] / fact[:, None]
        self.unit_real = dose * d * BARN_NM2 * 100.0
        self.sub_e = wd.energy_ev
        # background: energies of the channels of every bin
        self.bg_scale = dose * d * w.background_per_ev
        self.bg_e = wd.energy_ev

    def background(self, r, shift):
        """P (B, R, C) for exponents r (B,) and row shifts (B, R)."""
        e = self.bg_e.reshape(-1)
        x = (e[None] / self.window.background_ref_ev) ** (-np.asarray(r)[:, None])
        p1 = _bin_sum(x, self.b) * self.bg_scale
        p2 = _bin_sum(x / e[None], self.b) * self.bg_scale * np.asarray(r)[:, None]
        return p1[:, None, :] + shift[:, :, None] * p2[:, None, :]

    def edges_exact(self, prof: dict, fwhm) -> tuple:
        """Host and AlPO4 columns (B, R, C): every row shifted exactly in Fourier space (slower)."""
        f3 = prof["ti3_fraction"]
        coef = np.stack([np.ones_like(f3), prof["li_rel"], 1 - f3, f3, 1 - PREPEAK_TI3_LOSS * f3], -1)
        s = prof["shift_ev"]
        sh = phase(s, self.df, self.nf)
        xs = (coef @ self.templates) * sh
        ys = self.y * sh
        if self.has_o:
            peaks = (self.peak_a * prof["peak_a_rel"][..., None]
                     * phase(prof["peak_a_ev"] + s - self.e0, self.df, self.nf)
                     + self.peak_b * phase(prof["peak_b_ev"] + s - self.e0, self.df, self.nf))
            xs = xs + self.o_host * peaks
            ys = ys + self.o_alpo * peaks
        tf = resolution_tf(self.freq[None, :], np.asarray(fwhm)[:, None])[:, None, :]
        m = self.n // self.dec
        x = _bin_sum(sfft.irfft(xs * tf, n=m, axis=-1, workers=-1)[..., self.crop], self.group)
        y = _bin_sum(sfft.irfft(ys * tf, n=m, axis=-1, workers=-1)[..., self.crop], self.group)
        return x, y


    def edges(self, prof: dict, fwhm) -> tuple:
        """Host and AlPO4 columns (B, R, C) for blurred profiles (B, R) and resolution (B,).

        The mean shift of each parameter vector is applied exactly (a phase); the row-to-row
        part delta_r (the bow) by a Taylor series of order TAYLOR_ORDER in delta_r, which turns
        the per-row work into one small matrix product.  O-K peaks "a" and "b" are resolution-
        broadened Gaussians (sigma^2 = sigma_peak^2 + sigma_res^2) evaluated per row at their
        exact shifted positions.  Falls back to :meth:`edges_exact` where |delta_r| > TAYLOR_MAX_EV.
        """
        s = prof["shift_ev"]
        sbar = s.mean(-1)
        delta = s - sbar[:, None]
        fwhm = np.asarray(fwhm, dtype=float)
        dmax = np.max(np.abs(delta), axis=-1)
        far = dmax > TAYLOR_MAX_EV
        if np.any(far):  # those walkers exactly, the others by the series: per-walker values
            xe, ye = self.edges_exact({k: v[far] for k, v in prof.items()}, fwhm[far])
            if np.all(far):
                return xe, ye
            xt, yt = self.edges({k: v[~far] for k, v in prof.items()}, fwhm[~far])
            x = np.empty((s.shape[0],) + xe.shape[1:])
            y = np.empty_like(x)
            x[far], y[far], x[~far], y[~far] = xe, ye, xt, yt
            return x, y
        # each walker's order: the smallest whose first neglected term (|delta| / 0.3 eV)^(J+1) / (J+1)!
        # is < 1e-6; higher terms are zeroed for it, so a walker's value does not depend on its batch
        fact = np.cumprod(np.arange(1, TAYLOR_ORDER + 2))
        err = (dmax[:, None] / 0.3) ** np.arange(2, TAYLOR_ORDER + 2) / fact[1:]
        own = np.where(err < 1e-6, np.arange(1, TAYLOR_ORDER + 1), TAYLOR_ORDER).min(axis=1)
        order = int(own.max())
        tf = resolution_tf(self.freq[None, :], fwhm[:, None]) * phase(sbar, self.df, self.nf)
        spec = self.stack[None, :, None, :] * self.deriv[None, None, :order + 1] * tf[:, None, None, :]
        m = self.n // self.dec
        t = _bin_sum(sfft.irfft(spec, n=m, axis=-1)[..., self.crop], self.group)   # (B, K + 1, J, C)
        jj = np.arange(order + 1)
        taylor = (-delta[..., None]) ** jj * (jj <= own[:, None, None])   # (B, R, J)
        f3 = prof["ti3_fraction"]
        coef = np.stack([np.ones_like(f3), prof["li_rel"], 1 - f3, f3, 1 - PREPEAK_TI3_LOSS * f3], -1)
        coef = coef[..., self.active]
        B, R = f3.shape
        k = self.active.size
        cx = (coef[..., :, None] * taylor[..., None, :]).reshape(B, R, -1)
        x = cx @ t[:, :k].reshape(B, -1, t.shape[-1])
        y = taylor @ t[:, k]
        if self.has_o:
            res_s = fwhm * FWHM_TO_SIGMA
            ref = self.ref * self.unit_real
            for height, fw, pos, rel in ((ed.O_PEAK_A_HEIGHT, ed.O_PEAK_A_FWHM_EV, prof["peak_a_ev"],
                                          prof["peak_a_rel"]), (ed.O_PEAK_B_HEIGHT, ed.O_PEAK_B_FWHM_EV,
                                                                prof["peak_b_ev"], None)):
                sp = fw * FWHM_TO_SIGMA
                se = np.sqrt(sp ** 2 + res_s ** 2)                      # (B,)
                c = pos + s                                            # (B, R)
                reach = PEAK_SIGMAS * se.max()
                e = self.sub_e
                j0 = int(np.searchsorted(e[:, -1], np.nanmin(c) - reach))
                j1 = int(np.searchsorted(e[:, 0], np.nanmax(c) + reach))
                if j1 <= j0:
                    continue
                amp = height * ref * sp / se[:, None]
                if rel is not None:
                    amp = amp * rel
                step = self.window.scale_ev
                vals = gauss_rows(e[j0, 0], step, (j1 - j0) * self.b, c, se)
                # truncate at PEAK_SIGMAS per walker and row, not at the batch's slice ends, so a
                # walker's value does not depend on the other walkers of its batch
                ef = e[j0, 0] + step * np.arange((j1 - j0) * self.b)
                vals *= np.abs(ef - c[..., None]) <= PEAK_SIGMAS * se[:, None, None]
                g = amp[..., None] * _bin_sum(vals, self.b)
                x[..., j0:j1] += self.o_host * g
                y[..., j0:j1] += self.o_alpo * g
        return x, y


class ImageModel:
    """The joint model: parameters (B, P) -> columns of every window."""

    def __init__(self, data: PreparedData, pset: ParameterSet):
        self.data, self.pset = data, pset
        self.kernels = tuple(RegionKernels(wd, data.instrument) for wd in data.windows)
        rows = data.y_nm.size
        sig = data.instrument.spatial_blur_fwhm_nm * FWHM_TO_SIGMA / data.row_nm
        eye = np.eye(rows)
        self.blur = gaussian_filter1d(eye, sig, axis=0, mode="nearest") if sig > 0 else eye

    def profiles(self, theta) -> dict:
        """Row profiles (B, R) at the parameters, before the blur along y."""
        return row_profiles(self.pset.as_dict(np.atleast_2d(theta)), self.pset.ti3_mode, self.data.y_nm)

    def columns(self, theta) -> tuple:
        """One :class:`Columns` per window for theta (B, P)."""
        theta = np.atleast_2d(theta)
        p = self.pset.as_dict(theta)
        prof = self.profiles(theta)
        bl = {k: v @ self.blur.T for k, v in prof.items() if k != "r_oo_nm"}
        out = []
        plural = self.data.plural or (None,) * len(self.kernels)
        for k, pl in zip(self.kernels, plural):
            name = k.window.name
            x, y = k.edges(bl, p["resolution_fwhm_ev"])
            if pl is not None:  # a DualEELS input: each row's plural scattering (.plural)
                if pl.kernel_tf is not None:
                    x, y = pl.convolve(x), pl.convolve(y)
                else:
                    x, y = x * pl.unscattered[:, None], y * pl.unscattered[:, None]
            if name != self.pset.reference:
                sc = np.asarray(p[f"edge_scale_{name}"])[:, None, None]
                x, y = x * sc, y * sc
            out.append(Columns(k.background(p[f"background_r_{name}"], bl["shift_ev"]), x, y))
        return tuple(out)
