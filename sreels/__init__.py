"""sreels: spatially-resolved EELS of battery interfaces.

>>> import sreels
>>> sim = sreels.simulate(rng=1)                 # the source study's interface
>>> res = sreels.fit_image(sreels.load_measurement(["low.hspy", "high.hspy"]))
"""

__version__ = "0.1.0"

_LAZY = {
    "simulate": "sreels.forward.simulate",
    "Scenario": "sreels.config", "Instrument": "sreels.config", "Detector": "sreels.config",
    "load_config": "sreels.config",
    "fit_image": "sreels.inference.fast", "FitSettings": "sreels.inference.fast",
    "load_measurement": "sreels.inference.load",
}


def __getattr__(name):  # lazy: `sreels --help` stays instant
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sreels' has no attribute {name!r}")
