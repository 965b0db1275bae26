"""Small pure functions of the fast path."""

import numpy as np


def test_beyond_rule_is_beyond_the_range_by_twice_the_error():
    from sreels.inference.fast import beyond_rule

    r = np.array([0.334, 0.320, 0.316, 0.2685, 0.255, 0.262, np.nan])
    e = np.array([0.005, 0.003, 0.002, 0.001, 0.005, 0.001, np.nan])
    np.testing.assert_array_equal(beyond_rule(r, e, (0.2685, 0.3137)), [True, True, False, False, True, True, False])
