"""Property tests of the `fields[]` selector over HTTP: whatever a key holds (quotes, `==`,
`&`, `%`, unicode, control characters, trailing blanks, very long or empty values), an upsert
touches exactly the profiles with that key, and running it again creates nothing.

The oracle is what a user expects of a key, not the emulator's code: the profiles whose key
equals the record's case-insensitively (Copernica compares text and e-mail fields so).
Copernica trims a selector expression, so the target writes keys without trailing blanks; a
key longer than its field cannot be found again once cut, so it is rejected.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from copernica_emulator import Emulator
from tests.target_helpers import records, run_target, schema, target_config

FIELD_LENGTH = 255
TRAILING_TRIM = " \t\n\r\0\x0b"  # PHP's trim set: what Copernica strips from a selector
PIECES = st.sampled_from(
    [
        *("'", '"', "==", "=", "&", "%", "%25", "+", "#", "?", "=~", "!=", "<", ">", "<>", "\\"),
        *("_", " ", "\t", "\n", "\x00", "\u00a0", "é", "É", "ß", "İ", "ﬃ", "😀", "a", "Z", "@"),
    ]
)
KEYS = st.one_of(
    st.lists(st.one_of(PIECES, st.text(max_size=6)), max_size=10).map("".join),
    st.text(min_size=FIELD_LENGTH - 5, max_size=FIELD_LENGTH + 40),  # around the limit
    st.just(""),
)
SCHEMA = schema(
    "people", {"properties": {"email": {"type": "string"}, "firstname": {"type": "string"}}}
)
_databases = itertools.count(1)


def decoys(key: str) -> list[str]:
    """Keys a broken selector could confuse with `key`."""
    near = [key + "x", "x" + key, key[:-1], "=" + key, key.replace("==", "="), key + "%", "%"]
    return [d for d in near if d.strip()]


@pytest.fixture(scope="module")
def emu() -> Any:
    with Emulator(seed=3, profiles_per_database=0) as emulator:
        yield emulator


def new_database(emu: Emulator, stored: list[str]) -> str:
    name = f"Keys{next(_databases)}"
    db = emu.store.add_database(name)
    emu.store.add_field("database", db, "email", "text", length=FIELD_LENGTH)
    emu.store.add_field("database", db, "firstname", "text")
    for n, value in enumerate(stored):
        emu.store.create_profile(db, {"email": value, "firstname": f"decoy {n}"})
    return name


@pytest.mark.parametrize("write_path", ["api", "bulk"])
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(key=KEYS, others=st.lists(KEYS, max_size=3), exists=st.booleans())
def test_an_upsert_selects_exactly_the_profiles_with_its_key(
    emu: Emulator,
    tmp_path_factory: pytest.TempPathFactory,
    write_path: str,
    key: str,
    others: list[str],
    exists: bool,
) -> None:
    stored = [*decoys(key), *others, *([key] if exists else [])]
    database = new_database(emu, stored)
    before = {p["ID"]: p["fields"] for p in emu.store.profiles(database)}
    tmp_path = tmp_path_factory.mktemp("run")
    config = target_config(emu, tmp_path, database=database, write_path=write_path)
    message = records("people", [{"email": key, "firstname": "CHANGED"}])
    run = run_target(config, [SCHEMA, *message])
    after = {p["ID"]: p["fields"] for p in emu.store.profiles(database)}

    written = key.rstrip(TRAILING_TRIM)
    if not written.strip() or len(written) > FIELD_LENGTH:
        assert [r["reason"] for r in run.rejected] == [run.rejected[0]["reason"]]
        assert "key field 'email'" in run.rejected[0]["reason"]
        assert after == before, "a rejected key changes nothing"
        return
    assert run.rejected == []
    same = {pid for pid, f in before.items() if f["email"].casefold() == written.casefold()}
    changed = {pid for pid in before if after[pid] != before[pid]}
    assert changed == same, "exactly the profiles with this key were updated"
    assert all(after[pid]["firstname"] == "CHANGED" for pid in same)
    created = [after[pid] for pid in after.keys() - before.keys()]
    assert created == ([] if same else [{"email": written, "firstname": "CHANGED"}])

    again = run_target(config, [SCHEMA, *message])
    assert again.rejected == []
    assert len(emu.store.profiles(database)) == len(after), "a second run creates nothing"
