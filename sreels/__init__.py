"""sreels: spatially-resolved EELS of battery interfaces.

>>> import sreels
>>> sim = sreels.simulate(sreels.Scenario(li_max_rel=6.0), rng=1)   # or an explicit numpy Generator
>>> sim.windows["high"].counts                                       # (rows, channels) detector counts
>>> res = sreels.fit_image(sreels.load_measurement(["low.hspy", "high.hspy"]))
>>> res.columns["li_rel"], res.columns["li_rel_err"], res.status

The names load lazily (``sreels --help`` stays instant); ``dir(sreels)`` lists them.
"""

__version__ = "0.2.0"

_LAZY = {
    "simulate": "sreels.forward.simulate",
    "Scenario": "sreels.config", "Instrument": "sreels.config", "Detector": "sreels.config",
    "load_config": "sreels.config",
    "fit_image": "sreels.inference.fast", "FitSettings": "sreels.inference.fast",
    "load_measurement": "sreels.inference.load",
}


__all__ = sorted(_LAZY)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name):  # lazy: `sreels --help` stays instant
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sreels' has no attribute {name!r}")
