"""Selections (views, miniviews, rules, conditions), unsubscribe behaviour, consumption.

`STRUCTURE_SPECS` is registered in `tap.py`; this module fills it.
"""

from __future__ import annotations

from tap_copernica.streams import StreamSpec

STRUCTURE_SPECS: tuple[StreamSpec, ...] = ()
