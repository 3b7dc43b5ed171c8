"""The plugins' bytecode written before anything is timed, as `pip install` leaves it.

An editable install run with `PYTHONDONTWRITEBYTECODE` set (as on CI machines) compiles
every module of the plugins again at each start, about 0.2 s that an installed plugin
never spends; the benchmark's ratios would measure it.
"""

from __future__ import annotations

import compileall
import importlib.util
from pathlib import Path

PACKAGES = ("copernica_api", "tap_copernica", "target_copernica", "copernica_emulator")


def compile_plugins() -> list[str]:
    """Compile each package's modules (`compileall` writes whatever the environment says);
    returns the packages compiled."""
    done: list[str] = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        if compileall.compile_dir(Path(spec.origin).parent, quiet=1):
            done.append(name)
    return done
