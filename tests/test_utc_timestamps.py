"""`utc_timestamps`: the same instants written in UTC, for loaders that drop the offset."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from copernica_api.fields import FieldReader, field_type
from copernica_api.timeutil import api_to_iso, api_to_utc, to_api
from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import SyncResult, sync

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
#: (API local time, as emitted by default, as emitted with `utc_timestamps`)
WINTER = ("2024-01-15 10:00:00", "2024-01-15T10:00:00+01:00", "2024-01-15T09:00:00Z")
SUMMER = ("2024-07-15 10:00:00", "2024-07-15T10:00:00+02:00", "2024-07-15T08:00:00Z")


def instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.parametrize("zone", ["Europe/Amsterdam", "Asia/Kolkata", "America/St_Johns", "UTC"])
def test_utc_is_the_same_instant_as_the_offset_form_through_both_dst_changes(zone: str) -> None:
    tz = ZoneInfo(zone)
    local = dt.datetime(2024, 3, 30)
    while local < dt.datetime(2024, 10, 28, 6):  # spring-forward and fall-back, minute by 7
        text = local.strftime("%Y-%m-%d %H:%M:%S")
        offset_form, utc_form = api_to_iso(text, tz), api_to_utc(text, tz)
        assert offset_form is not None, text
        assert utc_form is not None, text
        assert utc_form.endswith("Z"), utc_form
        assert len(utc_form) == len("2024-01-01T00:00:00Z"), utc_form
        assert instant(utc_form) == instant(offset_form), text
        local += dt.timedelta(minutes=7)
    day = api_to_utc("2024-01-01", tz)  # a bare date: its midnight
    assert day is not None
    assert instant(day) == instant(str(api_to_iso("2024-01-01", tz)))


def test_utc_conversion_of_the_dst_edges_and_of_what_is_no_time() -> None:
    # The hour that does not exist in spring and the one that repeats in autumn are read as
    # `api_to_iso` reads them (the offset before the change; the first occurrence).
    assert api_to_utc("2024-03-31 02:30:00", AMSTERDAM) == "2024-03-31T01:30:00Z"
    assert api_to_utc("2024-10-27 02:30:00", AMSTERDAM) == "2024-10-27T00:30:00Z"
    assert api_to_utc("2024-10-27 03:30:00", AMSTERDAM) == "2024-10-27T02:30:00Z"
    assert api_to_utc(WINTER[0], AMSTERDAM) == WINTER[2]
    assert api_to_utc(SUMMER[0], AMSTERDAM) == SUMMER[2]
    for nothing in (None, "", "0000-00-00", "0000-00-00 00:00:00", "yesterday", "2024-13-01"):
        assert api_to_utc(nothing, AMSTERDAM) is None, nothing
    assert api_to_utc("2024-01-01 10:61:00", AMSTERDAM) is None


def test_the_calendar_edges_give_four_digit_years_or_nothing_never_a_crash() -> None:
    """Year 1 and year 9999 lie outside UTC's years on one side of the clock. They read as
    no time (a typed value counted as unfit), and years before 1000 keep four digits in
    both forms (glibc's `strftime("%Y")` writes year 1 as '1')."""
    new_york = ZoneInfo("America/New_York")
    assert api_to_utc("0001-01-01 00:00:00", AMSTERDAM) is None  # 0000-12-31 in UTC
    assert api_to_utc("0001-01-01", AMSTERDAM) is None
    assert api_to_utc("9999-12-31 23:59:59", new_york) is None  # 10000-01-01 in UTC
    assert api_to_utc("0001-01-01 00:00:00", new_york) == "0001-01-01T04:56:02Z"
    assert api_to_utc("0999-06-01 12:00:00", AMSTERDAM) == "0999-06-01T11:40:28Z"
    assert api_to_utc("9999-12-31 23:59:59", AMSTERDAM) == "9999-12-31T22:59:59Z"
    assert api_to_iso("0001-01-01 00:00:00", new_york) == "0001-01-01T00:00:00-04:56:02"
    reader = FieldReader({"at": "datetime"}, AMSTERDAM, utc=True)
    assert reader.read("at", "0001-01-01 00:00:00") is None
    assert reader.unreadable["at"] == 1


def test_filters_and_writes_keep_four_digit_years() -> None:
    """The API's filter strings and written values: 'YYYY-MM-DD hh:mm:ss' for any year."""
    early = dt.datetime(999, 6, 1, 12, 0, 0, 250_000, tzinfo=dt.timezone.utc)
    assert to_api(early, AMSTERDAM) == "0999-06-01 12:19:32"
    assert field_type("datetime").write(early, AMSTERDAM) == "0999-06-01 12:19:32"
    assert to_api(instant("2024-07-15T08:00:00Z"), AMSTERDAM) == SUMMER[0]


def test_typed_field_reader_converts_date_times_only() -> None:
    types = {"at": "datetime", "maybe_at": "empty_datetime", "day": "date", "n": "integer"}
    default, utc = FieldReader(types, AMSTERDAM), FieldReader(types, AMSTERDAM, utc=True)
    for field in ("at", "maybe_at"):
        assert default.read(field, SUMMER[0]) == SUMMER[1]
        assert utc.read(field, SUMMER[0]) == SUMMER[2]
        assert utc.read(field, "0000-00-00 00:00:00") is None
    assert utc.read("day", "2024-07-15") == default.read("day", "2024-07-15") == "2024-07-15"
    assert utc.read("n", "12") == 12
    assert utc.read("at", "not a time") is None
    assert utc.unreadable["at"] == 1


def date_time_fields(result: SyncResult) -> dict[str, list[str]]:
    """Per stream, the properties its SCHEMA message declares as date-time."""
    fields: dict[str, list[str]] = {}
    for message in result.messages:
        if message.get("type") == "SCHEMA":
            properties = message["schema"].get("properties", {})
            fields[message["stream"]] = [
                name for name, spec in properties.items() if spec.get("format") == "date-time"
            ]
    return fields


def stamp(emulator: Emulator) -> tuple[int, int]:
    """A winter and a summer profile of Customers: `modified`, `created` and `signup_at`."""
    winter, summer = (int(p["ID"]) for p in emulator.store.profiles("Customers")[:2])
    for profile_id, (local, _, _) in ((winter, WINTER), (summer, SUMMER)):
        profile = emulator.store.profile(profile_id)
        profile.created = profile.modified = local
        profile.fields["signup_at"] = local
    return winter, summer


def test_every_stream_emits_the_same_instants_in_utc(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    winter, summer = stamp(emulator)
    plain = sync(config)
    utc = sync({**config, "utc_timestamps": True})
    assert plain.exit_code == utc.exit_code == 0
    fields = date_time_fields(plain)
    assert fields == date_time_fields(utc)  # the schemas do not change
    assert set(plain.records) == set(utc.records)
    checked = 0
    for stream, records in plain.records.items():
        converted = utc.records[stream]
        assert len(records) == len(converted), stream
        for before, after in zip(records, converted, strict=True):
            for name in before:
                if name not in fields[stream]:  # IDs, text, numbers, dates: unchanged
                    assert after[name] == before[name], (stream, name)
                elif before[name] is None:
                    assert after[name] is None, (stream, name)
                else:
                    assert before[name][-6:] in ("+01:00", "+02:00"), (stream, name)
                    assert after[name].endswith("Z"), (stream, name, after[name])
                    drift = instant(after[name]) - instant(before[name])
                    # The emulator schedules emailings relative to its (running) clock.
                    slack = 5 if stream.endswith("scheduled_emailings") else 0
                    assert abs(drift.total_seconds()) <= slack, (stream, name)
                    checked += 1
    assert checked > 1000
    # Winter and summer rows: one wall clock by default, two UTC hours with the setting.
    for generic, typed in (("profiles", "profiles_customers"),):
        for result, form in ((plain, 1), (utc, 2)):
            by_id = {r["ID"]: r for r in result.records[generic]}
            typed_by_id = {r["ID"]: r for r in result.records[typed]}
            for profile_id, expected in ((winter, WINTER), (summer, SUMMER)):
                assert by_id[profile_id]["modified"] == expected[form]
                assert by_id[profile_id]["created"] == expected[form]
                assert typed_by_id[profile_id]["modified"] == expected[form]
                assert typed_by_id[profile_id]["signup_at"] == expected[form]


def bookmarks(result: SyncResult, stream: str) -> list[Any]:
    partitions = result.final_state["bookmarks"][stream].get("partitions", [])
    return [p.get("replication_key_value") for p in partitions]


@pytest.mark.parametrize(("first_utc", "second_utc"), [(True, True), (False, True), (True, False)])
def test_state_resumes_whichever_way_the_setting_is_and_when_it_switches(
    emulator: Emulator, config: dict[str, Any], first_utc: bool, second_utc: bool
) -> None:
    streams = ["profiles", "profiles_customers", "ms_clicks"]
    first = sync({**config, "utc_timestamps": first_utc}, streams=streams)
    assert first.exit_code == 0
    assert len(first.records["profiles_customers"]) == 120
    # Bookmarks keep the offset form either way: a run can read the other's state.
    for stream in ("profiles", "profiles_customers"):
        assert bookmarks(first, stream)
        assert all(str(v)[-6:] in ("+01:00", "+02:00") for v in bookmarks(first, stream))
    changed = int(emulator.store.profiles("Customers")[4]["ID"])
    emulator.store.update_profile(changed, {"firstname": "Renamed"})
    second_config = {**config, "utc_timestamps": second_utc}
    second = sync(second_config, streams=streams, state=first.final_state)
    assert second.exit_code == 0
    assert [(r["ID"], r["firstname"]) for r in second.records["profiles_customers"]] == [
        (changed, "Renamed")
    ]
    assert [r["ID"] for r in second.records["profiles"]] == [changed]
    assert "ms_clicks" not in second.records  # nothing new since the first run's windows
    modified = second.records["profiles_customers"][0]["modified"]
    assert modified.endswith("Z") == second_utc


@pytest.mark.parametrize(
    ("zone", "year_one"),
    [
        ("America/New_York", "0001-01-01T00:00:00Z"),
        ("Europe/Amsterdam", "0001-01-01T00:00:00Z"),
        ("Europe/Amsterdam", "0001-01-01"),  # the account's zone: year 0 in UTC
        ("America/New_York", "0001-01-01"),
    ],
)
def test_a_start_date_of_year_one_reads_everything_like_any_early_date(
    emulator: Emulator, zone: str, year_one: str
) -> None:
    """`start_date: 0001-01-01` is a common way to say "everything"; it used to end the run
    with an OverflowError (an hour before year 1 while choosing the filter's floor, and an
    emailing list's window start converted to UTC)."""
    streams = [
        "profiles",
        "subprofiles_customers_orders",
        "ms_emailings",
        "publisher_emailings",
        "ms_clicks",
        "consumption",
    ]
    early = sync(config_for(emulator, start_date="2000-01-01", timezone=zone), streams=streams)
    first = sync(config_for(emulator, start_date=year_one, timezone=zone), streams=streams)
    assert first.exit_code == early.exit_code == 0, first.stderr
    for stream in streams:
        assert first.records.get(stream) == early.records.get(stream), stream
    assert first.records["profiles"], "the emulator's profiles"
