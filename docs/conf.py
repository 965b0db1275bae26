"""Sphinx configuration of the sreels documentation (build: ``sphinx-build -W -b html docs docs/_build``)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import sreels  # noqa: E402

project = "sreels"
author = "The sreels developers"
copyright = "2026, The sreels developers"
release = version = sreels.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "clihelp"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_typehints = "none"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_ivar = True  # "Attributes" sections as fields: no second description of dataclass fields
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
nitpicky = False
suppress_warnings = ["ref.python"]  # forward references in docstrings that name private helpers
