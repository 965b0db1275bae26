"""Exceptions raised for bad user input.

Every message names the offending value and what was expected, so a user can
fix a file without reading the source.
"""


class SreelsInputError(ValueError):
    """Bad user input: a file, a configuration key, an axis or an array."""
