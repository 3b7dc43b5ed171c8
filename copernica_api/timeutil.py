"""Copernica's clock: naive `YYYY-MM-DD hh:mm:ss` strings in the account's time zone.

The API writes and filters every timestamp as a local string without a zone (the account's
zone; Europe/Amsterdam unless configured). Records and bookmarks carry ISO 8601 with an
offset instead, which is unambiguous; these helpers convert between the two.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from functools import cache, lru_cache, partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ZERO_TIMESTAMPS = frozenset({"", "0000-00-00", "0000-00-00 00:00:00"})


def zone(name: str) -> ZoneInfo:
    """The named IANA zone; raises ValueError with the setting's name when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"`timezone`: unknown time zone {name!r}; use an IANA name like 'Europe/Amsterdam'."
        raise ValueError(msg) from None


def api_to_datetime(value: str, tz: ZoneInfo) -> dt.datetime | None:
    """Parse an API timestamp (local, naive) into an aware datetime; zero dates give None."""
    value = value.strip()
    if value in ZERO_TIMESTAMPS or value.startswith("0000-00-00"):
        return None
    if not _API_SHAPE.fullmatch(value):
        msg = f"not a Copernica timestamp: {value!r}"
        raise ValueError(msg)
    return dt.datetime.fromisoformat(value).replace(tzinfo=tz)


_API_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?")


def api_to_iso(value: str | None, tz: ZoneInfo) -> str | None:
    """API timestamp string to ISO 8601 with offset; None/zero/unparseable to None
    (`iso_converter(tz)`, which loops over many values call directly)."""
    return iso_converter(tz)(value)


@cache
def iso_converter(tz: ZoneInfo, *, utc: bool = False) -> Callable[[Any], str | None]:
    """`api_to_iso` (with `utc`, `api_to_utc`) for one zone, as a single call.

    The hot path of every profile: the offset is looked up once per local day, and per
    local hour on the days the clocks change (the autumn hour that repeats taken as its
    first occurrence, as `zoneinfo` does); the rest is string surgery on the API's layout.
    """
    if utc:
        return partial(api_to_utc, tz=tz)
    # Each local day's offset ('' when it changes that day, or for no valid date), and each
    # hour's for the days the clocks change: a timestamp of a day seen before costs a dict
    # lookup; a new day one offset computation (timestamps that spread over years hit few
    # hours twice). One converter, so one table, per zone (cached).
    offsets: dict[str, str] = {}
    hours, clock = _HOURS, _CLOCK

    def convert(value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        if (
            len(value) == 19
            and value[10] == " "
            and value[13] == ":"
            and value[14:] in clock
            and value[11:13] in hours
        ):
            day = value[:10]
            offset = offsets.get(day)
            if offset is None:
                offset = _remember(offsets, day, _day_offset(day, tz))
            if not offset:  # the clocks change that day (or the date is not one): by the hour
                hour = value[:13]
                offset = offsets.get(hour)
                if offset is None:
                    offset = _remember(offsets, hour, _hour_offset(hour, tz) or "")
            return f"{day}T{value[11:]}{offset}" if offset else None
        try:
            parsed = api_to_datetime(value, tz)
        except ValueError:
            return None
        return parsed.isoformat() if parsed else None

    return convert


#: Valid hours and `mm:ss`: set lookups check a timestamp's clock.
_HOURS = frozenset(f"{h:02d}" for h in range(24))
_CLOCK = frozenset(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))
_MAX_ENTRIES = 65536


def _remember(offsets: dict[str, str], key: str, offset: str) -> str:
    """Keep `offset` for `key`; a full cache is emptied first (bounds memory)."""
    if len(offsets) >= _MAX_ENTRIES:
        offsets.clear()
    offsets[key] = offset
    return offset


def _day_offset(day: str, tz: ZoneInfo) -> str:
    """The offset of local day 'YYYY-MM-DD' when it is the same all day, else ''."""
    first, last = _hour_offset(f"{day} 00", tz), _hour_offset(f"{day} 23", tz)
    return first if first and first == last else ""


def _hour_offset(hour: str, tz: ZoneInfo) -> str | None:
    """'+01:00' for a local hour 'YYYY-MM-DD hh'; None for a zero or invalid hour."""
    try:
        parsed = api_to_datetime(f"{hour}:00:00", tz)
    except ValueError:
        return None
    if parsed is None:
        return None
    return parsed.isoformat()[19:]


def api_to_utc(value: str | None, tz: ZoneInfo) -> str | None:
    """API timestamp string to ISO 8601 in UTC (`...Z`); None/zero/unparseable to None.

    The same instant as `api_to_iso` (the autumn hour that repeats taken as its first
    occurrence), written for loaders that keep the wall time and drop the offset (the
    `utc_timestamps` setting). Like `api_to_iso`, the conversion is looked up once per local
    hour; zones whose offset is not whole hours take the slower general path.
    """
    if not isinstance(value, str):
        return None
    if len(value) == 19 and value[13] == ":" and value[16] == ":" and value[10] == " ":
        hour = _utc_hour(value[:13], tz)
        minutes, seconds = value[14:16], value[17:19]
        if hour and minutes.isdigit() and seconds.isdigit() and minutes < "60" > seconds:
            return f"{hour}:{minutes}:{seconds}Z"
        if hour is None:
            return None
    try:
        parsed = api_to_datetime(value, tz)
        return None if parsed is None else _utc_text(parsed)
    except (ValueError, OverflowError):  # OverflowError: outside years 1-9999 in UTC
        return None


def _utc_text(instant: dt.datetime) -> str:
    """'YYYY-MM-DDThh:mm:ssZ', the year always four digits (`strftime("%Y")` on glibc writes
    year 1 as '1'); raises OverflowError when the instant falls outside years 1-9999 in UTC."""
    return instant.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def api_text(local: dt.datetime) -> str:
    """A wall time as the API writes it, 'YYYY-MM-DD hh:mm:ss' (the year always four digits,
    which `strftime("%Y")` does not promise for years before 1000)."""
    return local.replace(tzinfo=None, microsecond=0).isoformat(sep=" ")


@lru_cache(maxsize=65536)
def _utc_hour(hour: str, tz: ZoneInfo) -> str | None:
    """'YYYY-MM-DDThh' in UTC for a local hour 'YYYY-MM-DD hh'; '' when the zone's offset is
    not whole hours then (minutes shift too); None for a zero or invalid hour."""
    try:
        parsed = api_to_datetime(f"{hour}:00:00", tz)
        if parsed is None:
            return None
        offset = parsed.utcoffset()
        if offset is None or offset % dt.timedelta(hours=1):
            return ""
        return _utc_text(parsed)[:13]
    except (ValueError, OverflowError):  # OverflowError: before year 1 or after 9999 in UTC
        return None


def parse_instant(value: str, tz: ZoneInfo) -> dt.datetime:
    """Parse an ISO 8601 date or date-time from config or state; naive values are in `tz`.

    An instant before the first one UTC can hold (`0001-01-01` east of Greenwich, a common
    way to say "everything") is raised to it: nothing is older, and the windows and filters
    built from it do their arithmetic in UTC.
    """
    text = value.strip().replace("Z", "+00:00")
    parsed = dt.datetime.fromisoformat(text)
    instant = parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    return max(instant, _FIRST_INSTANT)  # aware comparison: no overflow


_FIRST_INSTANT = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def to_api(instant: dt.datetime, tz: ZoneInfo) -> str:
    """An instant as the API's local string (the form its `fields` filters compare); an
    instant whose local time falls outside years 1-9999 (a `start_date` of 0001-01-01 west
    of Greenwich) is the first or last string there is, which filters the same."""
    try:
        return api_text(instant.astimezone(tz))
    except OverflowError:
        return _FIRST_API_TEXT if instant.year < 5000 else _LAST_API_TEXT


_FIRST_API_TEXT, _LAST_API_TEXT = "0001-01-01 00:00:00", "9999-12-31 23:59:59"


def filter_floor(instant: dt.datetime, tz: ZoneInfo) -> tuple[str, bool]:
    """The local string to filter `>=` from so that nothing at or after `instant` is missed.

    Local strings repeat an hour when the clocks go back (DST fall-back). If such a repeat
    lies within the hour before `instant`, rows changed in the repeated hour after the
    bookmark would sort before it as strings, so start two hours earlier. Returns the
    string and whether it was moved back (then boundary ids must not be used to skip rows).
    """
    hour = dt.timedelta(hours=1)
    try:
        earlier = instant - hour
        if earlier.astimezone(tz).utcoffset() != instant.astimezone(tz).utcoffset():
            return to_api(instant - 2 * hour, tz), True
    except OverflowError:  # hours from year 1 (a `start_date` of 0001-01-01): no clock change
        pass
    return to_api(instant, tz), False


def settled_before(date_header: str | None, tz: ZoneInfo, margin_seconds: int) -> str | None:
    """The API local time before which no `modified` value can still change.

    The server stamps `Date` when it sends the response, a moment after it read the data, and
    the clock that stamps `modified` may differ a little from the one that stamps `Date`; a
    margin (`lookback_seconds`) is taken off for both. A profile changed within it keeps a
    `modified` value that the next run reads again instead of skipping it.
    """
    if not date_header:
        return None
    try:
        sent = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    return to_api(sent - dt.timedelta(seconds=margin_seconds), tz)
