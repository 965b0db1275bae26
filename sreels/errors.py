"""Exceptions raised for bad user input.

Every message names the offending value and what was expected, so a user can
fix a file without reading the source.
"""


class SreelsInputError(ValueError):
    """Bad user input: a file, a configuration key, an axis or an array."""


#: Exit codes of the ``sreels`` command, one meaning each, so that scripts can trust them.
EXIT_OK = 0               #: something was measured (or written) as asked
EXIT_FAILURE = 1          #: an operating-system or internal failure, said in one line
EXIT_INPUT = 2            #: bad input or usage: a file, a value, an output folder
EXIT_UNCONVERGED = 3      #: the Bayesian sampler did not converge (``--allow-unconverged`` to accept)
EXIT_NOTHING_MEASURED = 4  #: the run completed but not one row could be fitted
