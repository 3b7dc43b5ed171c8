"""Property tests: each field type's writer and reader agree, for any value of the type."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from copernica_api.fields import FieldReader, field_type
from copernica_api.timeutil import zone

AMS = zone("Europe/Amsterdam")
# Copernica stores local times without a zone; in the autumn hour that occurs twice a local
# string cannot say which one it was, so instants are drawn away from that hour.
instants = (
    st.datetimes(
        min_value=dt.datetime(1971, 1, 1),
        max_value=dt.datetime(2099, 12, 31),
        timezones=st.just(dt.timezone.utc),
    )
    .map(lambda d: d.replace(microsecond=0))
    .filter(
        lambda d: (
            (d - dt.timedelta(hours=1)).astimezone(AMS).utcoffset()
            == (d + dt.timedelta(hours=1)).astimezone(AMS).utcoffset()
        )
    )
)


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_integers_survive_the_round_trip(value: int) -> None:
    kind = field_type("integer")
    assert kind.read(kind.write(value, AMS), AMS) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_survive_the_round_trip(value: float) -> None:
    kind = field_type("float")
    assert kind.read(kind.write(value, AMS), AMS) == value


@given(st.dates(min_value=dt.date(1, 1, 1)))
def test_dates_survive_the_round_trip(value: dt.date) -> None:
    for name in ("date", "empty_date"):
        kind = field_type(name)
        assert kind.read(kind.write(value.isoformat(), AMS), AMS) == value.isoformat()


@given(instants)
def test_datetimes_keep_their_instant_through_account_local_time(value: dt.datetime) -> None:
    for name in ("datetime", "empty_datetime"):
        kind = field_type(name)
        api_string = kind.write(value.isoformat(), AMS)
        assert len(api_string) == 19
        read = kind.read(api_string, AMS)
        assert dt.datetime.fromisoformat(read) == value


@given(st.text())
def test_text_is_kept_as_given(value: str) -> None:
    kind = field_type("text")
    assert kind.read(kind.write(value, AMS), AMS) == value


@given(st.text())
def test_any_string_in_a_typed_field_reads_as_its_type_or_null_never_a_crash(value: str) -> None:
    expected = {"integer": int, "float": float, "date": str, "datetime": str, "foreign_key": int}
    reader = FieldReader({name: name for name in expected}, AMS)
    for name, python_type in expected.items():
        result = reader.read(name, value)
        assert result is None or isinstance(result, python_type)
