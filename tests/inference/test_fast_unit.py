"""Small pure functions of the fast path."""

import numpy as np
import pytest


def test_beyond_rule_is_beyond_the_range_by_twice_the_error():
    from sreels.inference.fast import beyond_rule

    r = np.array([0.334, 0.320, 0.316, 0.2685, 0.255, 0.262, np.nan])
    e = np.array([0.005, 0.003, 0.002, 0.001, 0.005, 0.001, np.nan])
    np.testing.assert_array_equal(beyond_rule(r, e, (0.2685, 0.3137)), [True, True, False, False, True, True, False])


def test_r_oo_beyond_the_rule_on_every_row_is_named_as_the_reason():
    """Rows beyond the rule keep their O-K peaks (usable for "o") but give no R_OO: when no row gives one, the
    reason is the flag (summary.json's note, the empty R_OO panel), not "not measured"."""
    from sreels.inference.derived import derive
    from sreels.inference.fast import usable, usable_by_edge, withheld_reasons

    n = 30
    status = np.array(["o_r_beyond_rule"] * 25 + ["no_o"] * 5)
    assert usable(status, "o")[:25].all()
    why = withheld_reasons(status)
    assert "o_r_beyond_rule on 25 of 30 rows" in why["o"] and "sreels calibrate" in why["o"]
    nan = np.full(n, np.nan)
    cols = {"li_rel": nan, "li_rel_err": nan, "ti3_fraction": nan, "ti3_fraction_err": nan, "r_oo_nm": nan,
            "r_oo_nm_err": nan, "r_oo_nm_err_stat": nan}
    d = derive(np.arange(n) * 10.0, cols, usable_by_edge(status), 2.668, 0.08, why=why)
    assert any(x.startswith("R_OO withheld on every row (o_r_beyond_rule") for x in d["notes"])
    # one row with an R_OO: nothing is withheld on every row
    assert "o" not in withheld_reasons(np.array(["o_r_beyond_rule"] * 29 + ["ok"]))


@pytest.mark.parametrize("rows", [1, 31, 70])
def test_ti_part_taken_off_in_row_blocks_equals_the_whole_array_form(rows):
    """:func:`.fast._less_ti` (blocks of TI_PART_ROWS rows, products in place) gives exactly y less the Ti part
    computed on the whole array at once (the form it replaced)."""
    import types

    from sreels.inference.fast import TI_NAMES, _less_ti
    from sreels.inference.edgefits import Shifted

    def _ti_part(ef, refs, ti_fit, e, delta, amps):
        sh = [Shifted.build(ef, refs[n] / ti_fit.ref_scale) for n in TI_NAMES]
        where = sh[0].index(e, delta)
        return sum(r.interpolate(where, slopes=False) * a[:, None] for r, a in zip(sh, amps))

    rng = np.random.default_rng(rows)
    ef = np.arange(400.0, 700.0, 0.01)
    refs = {"Ti4+": np.exp(-((ef - 460) / 5) ** 2) + 0.1 * (ef > 455), "Ti3+": np.exp(-((ef - 458) / 5) ** 2)}
    fit = types.SimpleNamespace(ref_scale=3.0)
    e = 440.0 + 0.1 * np.arange(1700)
    delta = rng.normal(0, 0.5, rows)
    amps = [rng.random(rows) * 100, np.where(rng.random(rows) < 0.3, 0.0, rng.random(rows) * 50 - 10)]
    y = rng.random((rows, e.size)) * 1000
    assert np.array_equal(_less_ti(y, ef, refs, fit, e, delta, amps), y - _ti_part(ef, refs, fit, e, delta, amps))
