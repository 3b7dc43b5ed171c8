"""Marketing Suite and Publisher mailings, destinations, statistics and events (issue 4).

`MAILING_SPECS` is registered in `tap.py`; this module fills it.
"""

from __future__ import annotations

from tap_copernica.streams import StreamSpec

MAILING_SPECS: tuple[StreamSpec, ...] = ()
