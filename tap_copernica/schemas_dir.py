"""Where the stream schemas are: inside the installed wheel, or `schemas/` in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def schema_dir() -> Path:
    """The folder of `<stream>.json` files (the wheel ships `schemas/` inside the package)."""
    packaged = _PACKAGE_DIR / "schemas"
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / "schemas"
