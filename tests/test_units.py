"""Pure helpers: JWT parsing, local-time conversions, Retry-After, the ID list paginator."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random

import pytest
import requests

from copernica_api.auth import extract_jwt, jwt_expiry
from copernica_api.fields import FieldReader, field_type
from copernica_api.http import retry_after_seconds
from copernica_api.timeutil import api_to_iso, filter_floor, parse_instant, zone
from tap_copernica.paging import IdListPaginator, IdRangePlanner

AMS = zone("Europe/Amsterdam")


def make_jwt(claims: dict) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(b'{}')}.{b64(json.dumps(claims).encode())}.{b64(b'sig')}"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{token}", "text/plain"),
        ('"{token}"', "application/json"),
        ('{{"access_token": "{token}"}}', "application/json"),
        ('{{"data": {{"x": 1}}, "jwt": "{token}"}}', "application/json"),
        ("  {token}\n", ""),
    ],
)
def test_jwt_is_found_in_every_answer_shape(body: str, content_type: str) -> None:
    token = make_jwt({"exp": 2_000_000_000})
    assert extract_jwt(body.format(token=token).encode(), content_type) == token


def test_no_jwt_in_an_error_page() -> None:
    assert extract_jwt(b"<html>Loadbalancer Error</html>", "text/html") is None


def test_expiry_is_read_from_the_payload() -> None:
    assert jwt_expiry(make_jwt({"exp": 1_900_000_000})) == 1_900_000_000
    assert jwt_expiry(make_jwt({"iat": 5})) is None
    assert jwt_expiry("not-a-jwt") is None


def test_api_timestamps_become_iso_with_the_account_offset() -> None:
    assert api_to_iso("2024-01-15 10:00:00", AMS) == "2024-01-15T10:00:00+01:00"
    assert api_to_iso("2024-07-15 10:00:00", AMS) == "2024-07-15T10:00:00+02:00"
    assert api_to_iso("0000-00-00 00:00:00", AMS) is None
    assert api_to_iso("", AMS) is None


@pytest.mark.parametrize(
    "name",
    ["Europe/Amsterdam", "America/Santiago", "Asia/Beirut", "America/St_Johns", "Asia/Kolkata"],
)
def test_api_timestamps_get_the_offset_of_their_own_moment(name: str) -> None:
    """Every quarter hour of two years (offsets are looked up per day, and per hour on the
    days the clocks change: zones that change at 02:00, at midnight, with half-hour offsets),
    in shuffled order, each against `zoneinfo` (the repeated autumn hour: its first time)."""
    tz = zone(name)
    moment = dt.datetime(2023, 1, 1)
    stamps: list[str] = []
    while moment < dt.datetime(2025, 1, 1):
        stamps.append(moment.strftime("%Y-%m-%d %H:%M:%S"))
        moment += dt.timedelta(minutes=15)
    random.Random(7).shuffle(stamps)
    for stamp in stamps:
        expected = dt.datetime.fromisoformat(stamp).replace(tzinfo=tz).isoformat()
        assert api_to_iso(stamp, tz) == expected, stamp
    for invalid in ("2023-02-30 10:00:00", "2023-01-05 24:00:00", "2023-01-05 10:60:00"):
        assert api_to_iso(invalid, tz) is None, invalid


def test_filter_floor_moves_back_over_the_repeated_autumn_hour() -> None:
    # 2024-10-27 03:00 CEST -> 02:00 CET: local strings 02:00-02:59 occur twice.
    after_fallback = dt.datetime(2024, 10, 27, 1, 30, tzinfo=dt.timezone.utc)  # 02:30 CET
    floor, moved = filter_floor(after_fallback, AMS)
    assert moved
    assert floor < "2024-10-27 02:00:00"
    ordinary = parse_instant("2024-03-01T12:00:00+01:00", AMS)
    assert filter_floor(ordinary, AMS) == ("2024-03-01 12:00:00", False)


def _response(headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.headers.update(headers)
    return response


def test_retry_after_in_seconds_and_as_a_date() -> None:
    assert retry_after_seconds(_response({"Retry-After": "3"})) == 3
    dated = _response(
        {"Retry-After": "Mon, 23 Nov 2026 10:00:05 GMT", "Date": "Mon, 23 Nov 2026 10:00:00 GMT"}
    )
    assert retry_after_seconds(dated) == 5
    assert retry_after_seconds(_response({})) is None


def test_id_list_steps_back_when_a_delete_shifts_the_offsets() -> None:
    paginator = IdListPaginator(page_size=3)
    assert paginator.accept([1, 2, 3]) == [1, 2, 3]
    paginator.advance(None)  # type: ignore[arg-type]
    assert paginator.current_value == {"start": 2}
    # IDs 1 and 2 were deleted: offset 2 now starts at 5, past the last ID seen (3).
    assert paginator.accept([5, 6, 7]) == []
    paginator.advance(None)  # type: ignore[arg-type]
    assert paginator.current_value == {"start": 0}
    assert paginator.accept([3, 4, 5]) == [4, 5]


@pytest.mark.parametrize(
    ("kind", "api_value", "typed"),
    [
        ("integer", "-12", -12),
        ("integer", "", None),
        ("float", "1.5", 1.5),
        ("date", "2024-02-29", "2024-02-29"),
        ("date", "0000-00-00", None),
        ("empty_date", "", None),
        ("datetime", "2024-07-01 08:00:00", "2024-07-01T08:00:00+02:00"),
        ("datetime", "0000-00-00 00:00:00", None),
        ("empty_datetime", "", None),
        ("foreign_key", "0", None),
        ("foreign_key", "42", 42),
        ("text", "0000", "0000"),
        ("some_future_type", "x", "x"),
    ],
)
def test_each_field_type_reads_the_api_string(kind: str, api_value: str, typed: object) -> None:
    assert field_type(kind).read(api_value, AMS) == typed


@pytest.mark.parametrize(
    ("kind", "value", "api_value"),
    [
        ("integer", 7, "7"),
        ("integer", True, "1"),
        ("float", 2.25, "2.25"),
        ("date", "2024-02-29", "2024-02-29"),
        ("date", "2024-02-29T23:30:00Z", "2024-03-01"),
        ("datetime", "2024-07-01T06:00:00Z", "2024-07-01 08:00:00"),
        ("datetime", None, ""),
        ("text", False, ""),
        ("text", 3, "3"),
    ],
)
def test_each_field_type_writes_what_the_api_expects(
    kind: str, value: object, api_value: str
) -> None:
    assert field_type(kind).write(value, AMS) == api_value


def test_an_unreadable_value_is_null_and_counted() -> None:
    reader = FieldReader({"age": "integer"}, AMS)
    assert reader.read("age", "abc") is None
    assert reader.read("age", "3") == 3
    assert reader.unreadable == {"age": 1}


def test_fast_record_messages_match_the_sdk(config: dict[str, object]) -> None:
    """The private fast path in streams.py must write what the SDK writes (pinned SDK)."""
    import re  # noqa: PLC0415

    from singer_sdk import Stream  # noqa: PLC0415

    from tap_copernica.output import SingerLineWriter  # noqa: PLC0415
    from tap_copernica.tap import TapCopernica  # noqa: PLC0415

    def without_time(line: bytes) -> bytes:
        return re.sub(rb',"time_extracted":"\d{4}-\d\d-\d\dT[\d:.]+Z"', b"", line)

    tap = TapCopernica(config=config)
    writer = tap.message_writer
    assert isinstance(writer, SingerLineWriter)
    for name in ("profiles", "profiles_customers", "profile_ids"):
        stream = tap.streams[name]
        assert stream._fast_writer is writer  # type: ignore[attr-defined]
        assert [t for _, t in stream._map_plan] == [None]  # type: ignore[attr-defined]
        for version in (None, 7):
            stream._stream_version = version
            stream._extracted = dt.datetime(2024, 5, 6, 7, 8, 9, 1234, tzinfo=dt.timezone.utc)  # type: ignore[attr-defined]
            record = {"ID": 1, "database_id": 1, "modified": "2024-01-01T00:00:00+01:00"}
            if name == "profile_ids":
                record = {"profile_id": 1}
            if name == "profiles":
                record["fields"] = {"email": "a@b.c", "city": 'Zoë "Z"'}
            stream._write_record_message(dict(record))
            ours = bytes(writer._block)
            writer._block.clear()
            Stream._write_record_message(stream, dict(record))
            sdks = bytes(writer._block)
            writer._block.clear()
            assert ours.count(b"\n") == sdks.count(b"\n") == 1
            assert b'"time_extracted":"2024-05-06T07:08:09.001234Z"}' in ours
            assert without_time(ours) == without_time(sdks)  # byte for byte
            assert json.loads(ours)["record"] == record


def test_id_ranges_follow_the_density_and_stay_bounded() -> None:
    planner = IdRangePlanner(page_size=100, after_id=0, max_id=10**9, span=90)
    ranges = planner.ranges()
    low, high = next(ranges)
    assert (low, high) == (0, 90)
    planner.observe(low, high, 9)  # a sparse stretch: 9 rows in 90 IDs
    assert planner.span == 900
    low, high = next(ranges)
    assert high - low == 900
    planner.observe(low, high, 0)  # nothing at all: widen, but never past 20 pages of IDs
    planner.observe(low, high, 0)
    planner.observe(low, high, 0)
    assert planner.span == 2000
    planner.observe(0, 100, 100)  # dense again: one ID per row, so a page of IDs (full,
    assert planner.span == 100  # and never more than a page)
    planner.observe(0, 200, 190)  # nearly dense: still a page of IDs, not 95
    assert planner.span == 100
