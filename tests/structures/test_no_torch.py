"""The package never imports torch or CHGNet at run time (they are the ``relax`` extra only)."""

import subprocess
import sys
import textwrap

CODE = textwrap.dedent("""
    import sys, importlib.abc

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("torch", "chgnet"):
                raise ImportError(f"sreels must not import {name}")
            return None

    sys.meta_path.insert(0, Block())
    import sreels
    from sreels.cli import main
    from sreels.structures import mapping, nasicon
    rc = main(["structures", "--json"])
    nasicon.load_series()
    mapping.r_oo_nm_from_li([1.0, 3.0], model="structures")
    assert rc == 0, rc
    bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "chgnet"))
    assert not bad, bad
    print("no torch")
""")


def test_sreels_structures_runs_without_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("no torch")
