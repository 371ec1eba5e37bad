"""The CPython 3.10 virtual environment OpenFHE's wheel needs, shared by the OpenFHE benchmarks
(``bgv_vs_openfhe.py``, ``bootstrap_vs_openfhe.py``): ``bench/.venv-openfhe`` made with a 3.10
interpreter (pyenv's 3.10.x, else ``python3.10`` on PATH, or an explicit one), with
``openfhe==1.6.1.0.22.4`` installed."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv-openfhe"
REQUIREMENT = "openfhe==1.6.1.0.22.4"


def python310(explicit: str | None) -> str:
    """A CPython 3.10 interpreter: `explicit`, pyenv's, or python3.10 on PATH."""
    if explicit:
        return explicit
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found = sorted(glob.glob(f"{root}/versions/3.10.*/bin/python"))
    if found:
        return found[-1]
    exe = shutil.which("python3.10")
    if exe:
        return exe
    raise SystemExit("OpenFHE's wheel needs CPython 3.10: install it (pyenv install 3.10) or pass --python")


def openfhe_python(interpreter: str, log) -> str:
    """The venv's python, creating the venv and installing OpenFHE first if needed."""
    py = VENV / "bin" / "python"
    if not py.exists():
        log(f"creating {VENV} with {interpreter}")
        subprocess.run([interpreter, "-m", "venv", str(VENV)], check=True, stdout=sys.stderr)
    if subprocess.run([str(py), "-c", "import openfhe"], capture_output=True).returncode:
        log(f"installing {REQUIREMENT}")
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", REQUIREMENT],
                       check=True, stdout=sys.stderr)
    return str(py)
