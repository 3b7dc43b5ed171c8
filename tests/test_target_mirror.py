"""Mirror mode against the emulator over HTTP: a full table's ACTIVATE_VERSION removes exactly
the in-scope profiles the table did not contain, and nothing in every case where that could
be wrong (a cut-off stream, an ACTIVATE_VERSION before the records, too many removals)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.exceptions import ConfigValidationError

from copernica_emulator import Emulator
from target_copernica import destination
from tests.singer import run_cli, script
from tests.target_helpers import (
    CUSTOMER_SCHEMA,
    ORDER_SCHEMA,
    add_warehouse,
    profiles_by_email,
    records,
    run_target,
    schema,
    singer_lines,
    state,
    target_config,
)

VERSION = 1_700_000_000


@pytest.fixture
def emu() -> Any:
    with Emulator(seed=3, profiles_per_database=10) as emulator:
        db = add_warehouse(emulator)
        emulator.store.add_field("database", db, "source", "text")
        emulator.store.add_field("database", db, "status", "text")
        yield emulator


def rows(numbers: range | list[int], **extra: Any) -> list[dict[str, Any]]:
    return [{"email": f"user{i}@example.nl", "firstname": f"User {i}", **extra} for i in numbers]


def versioned(stream: str, table: list[dict[str, Any]], version: int) -> list[dict[str, Any]]:
    return [{**m, "version": version} for m in records(stream, table)]


def activate(stream: str, version: int) -> dict[str, Any]:
    return {"type": "ACTIVATE_VERSION", "stream": stream, "version": version}


def full_table(
    table: list[dict[str, Any]], version: int = VERSION, stream: str = "customers"
) -> list[dict[str, Any]]:
    """A full table as tap-copernica sends one: records, then ACTIVATE_VERSION."""
    return [
        schema(stream, CUSTOMER_SCHEMA, ["email"]),
        *versioned(stream, table, version),
        activate(stream, version),
        state({"bookmarks": {stream: version}}),
    ]


def mirror_config(emu: Emulator, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Mirror `customers`, the one stream routed to Warehouse (no default database: a scope
    that is a whole database must be one only the mirrored stream writes into)."""
    routes = {"customers": "Warehouse", **overrides.pop("stream_routes", {})}
    settings: dict[str, Any] = {
        "mirror_mode": "delete",
        "mirror_scope": {"database": "Warehouse"},
        "stream_routes": routes,
        **overrides,
    }
    config = target_config(emu, tmp_path, **settings)
    if "database" not in overrides:
        del config["database"]
    return config


def load(emu: Emulator, tmp_path: Path, numbers: range | list[int]) -> None:
    """Profiles written by an earlier plain run (no mirror)."""
    result = run_target(target_config(emu, tmp_path), full_table(rows(numbers)))
    assert result.exit_code == 0


def emails(emu: Emulator, database: str = "Warehouse") -> set[str]:
    return set(profiles_by_email(emu, database))


def deletes_sent(emu: Emulator) -> list[str]:
    return [r.path for r in emu.requests if r.method == "DELETE"]


# -- what is removed -------------------------------------------------------------------------
@pytest.mark.parametrize("write_path", ["api", "bulk"])
def test_exactly_the_absent_profiles_of_the_owned_database_are_deleted(
    emu: Emulator, tmp_path: Path, write_path: str
) -> None:
    load(emu, tmp_path, range(20))
    others = {db: len(emu.store.profiles(db)) for db in ("Customers", "Newsletter", "Legacy")}
    # 18 of the 20, and 300 new ones (on the bulk path: one import, still running when the
    # ACTIVATE_VERSION is read).
    table = rows([i for i in range(20) if i not in (4, 11)]) + rows(range(100, 400))
    config = mirror_config(emu, tmp_path, write_path=write_path)
    result = run_target(config, full_table(table))
    assert result.exit_code == 0
    expected = {f"user{i}@example.nl" for i in [*range(20), *range(100, 400)] if i not in (4, 11)}
    assert emails(emu) == expected
    assert len(deletes_sent(emu)) == 2
    summary = result.summary("customers")
    assert (summary["inserted"], summary["updated"], summary["mirror_deleted"]) == (300, 18, 2)
    # The basis is the 20 profiles there before the version, not the 300 it inserted.
    notes = result.target.summaries.for_stream("customers").notes
    assert notes == [
        f"Stream 'customers': mirror: deleted 2 of 20 profile(s) in scope before version "
        f"{VERSION} (database 'Warehouse'): those it did not contain."
    ]
    # Profiles outside the scope (the account's other databases) are untouched.
    assert {db: len(emu.store.profiles(db)) for db in others} == others


@pytest.mark.parametrize("write_path", ["api", "bulk"])
def test_a_marker_field_limits_the_scope_to_profiles_the_target_wrote(
    emu: Emulator, tmp_path: Path, write_path: str
) -> None:
    store = emu.store
    for i in range(5):  # someone else's profiles in the same database, without the marker
        store.create_profile("Warehouse", {"email": f"manual{i}@example.nl"})
    scope = {"field": "source"}
    config = mirror_config(
        emu, tmp_path, mirror_scope=scope, write_path=write_path, database="Warehouse"
    )
    first = run_target(config, full_table(rows(range(10)), VERSION))
    assert first.exit_code == 0
    marked = {e for e, p in profiles_by_email(emu).items() if p["fields"]["source"] == "customers"}
    assert marked == {f"user{i}@example.nl" for i in range(10)}, "the stream's name is its marker"
    second = run_target(config, full_table(rows(range(1, 10)), VERSION + 1))
    assert second.exit_code == 0
    assert emails(emu) == {f"user{i}@example.nl" for i in range(1, 10)} | {
        f"manual{i}@example.nl" for i in range(5)
    }, "only user0 goes: the unmarked profiles are not in scope though absent from the source"


def test_a_marker_interest_limits_the_scope(emu: Emulator, tmp_path: Path) -> None:
    store = emu.store
    db = store.database("Warehouse").id
    store.add_interest(db, "warehouse", "sync")
    store.create_profile(db, {"email": "manual@example.nl"}, ["news"])
    scope = {"database": "Warehouse", "interest": "warehouse"}
    config = mirror_config(emu, tmp_path, mirror_scope=scope)
    table = rows(range(10), interests=["news"])
    assert run_target(config, full_table(table, VERSION)).exit_code == 0
    profiles = profiles_by_email(emu)
    assert profiles["user3@example.nl"]["interests"] == ["news", "warehouse"]
    assert run_target(config, full_table(table[1:], VERSION + 1)).exit_code == 0
    assert emails(emu) == {f"user{i}@example.nl" for i in range(1, 10)} | {"manual@example.nl"}


def test_tap_postgres_style_activate_before_and_after_removes_after_the_records(
    emu: Emulator, tmp_path: Path
) -> None:
    load(emu, tmp_path, range(20))
    config = mirror_config(emu, tmp_path)
    messages = [
        schema("customers", CUSTOMER_SCHEMA, ["email"]),
        activate("customers", VERSION),  # before the records: removes nothing
        *versioned("customers", rows(range(1, 20)), VERSION),
        activate("customers", VERSION),
    ]
    result = run_target(config, messages)
    assert result.exit_code == 0
    assert emails(emu) == {f"user{i}@example.nl" for i in range(1, 20)}


# -- what removes nothing ------------------------------------------------------------------
def test_a_cut_off_stream_removes_nothing(emu: Emulator, tmp_path: Path) -> None:
    load(emu, tmp_path, range(20))
    complete = full_table(rows(range(5)))
    cut = [m for m in complete if m["type"] != "ACTIVATE_VERSION"]  # the source stopped
    result = run_target(mirror_config(emu, tmp_path, mirror_max_delete_fraction=1), cut)
    assert result.exit_code == 0
    assert len(emails(emu)) == 20
    assert deletes_sent(emu) == []


def test_an_activate_version_before_the_records_only_removes_nothing(
    emu: Emulator, tmp_path: Path
) -> None:
    load(emu, tmp_path, range(20))
    messages = [
        schema("customers", CUSTOMER_SCHEMA, ["email"]),
        activate("customers", VERSION),
        *versioned("customers", rows(range(5)), VERSION),
    ]
    result = run_target(mirror_config(emu, tmp_path, mirror_max_delete_fraction=1), messages)
    assert result.exit_code == 0
    assert len(emails(emu)) == 20
    assert deletes_sent(emu) == []


def test_above_the_threshold_nothing_is_removed_and_the_run_fails_after_the_rest_landed(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load(emu, tmp_path, range(20))
    routes = {
        "orders": {
            "database": "Warehouse",
            "collection": "Orders",
            "parent_key_property": "customer_email",
            "key_fields": ["order_id"],
        }
    }
    orders = [{"order_id": "A-1", "customer_email": "user0@example.nl", "amount": 5.0}]
    messages = [
        *full_table(rows(range(15), firstname="Changed")),
        schema("orders", ORDER_SCHEMA, ["order_id"]),
        *records("orders", orders),
    ]
    with caplog.at_level(logging.INFO):
        result = run_target(mirror_config(emu, tmp_path, stream_routes=routes), messages)
    assert result.exit_code == 3
    assert len(emails(emu)) == 20
    assert deletes_sent(emu) == []
    assert (
        f"5 of 20 profiles in scope before version {VERSION} would have been removed (25.0% > "
        "limit 10.0%); raise mirror_max_delete_fraction or check the source" in caplog.text
    )
    # The records themselves landed: the mirrored stream's and the next stream's.
    assert profiles_by_email(emu)["user3@example.nl"]["fields"]["firstname"] == "Changed"
    (orders_collection,) = emu.store.collections_of(emu.store.database("Warehouse"))
    subprofiles = emu.store.subprofiles(orders_collection.id)
    assert [s["fields"]["order_id"] for s in subprofiles] == ["A-1"]


def test_a_rejected_record_with_a_usable_key_keeps_its_profile(
    emu: Emulator, tmp_path: Path
) -> None:
    load(emu, tmp_path, range(20))
    table = rows(range(1, 20))
    table[2]["score"] = "not a number"  # user3: rejected by its SCHEMA, its key is fine
    result = run_target(mirror_config(emu, tmp_path), full_table(table))
    assert result.exit_code == 0
    assert [r["record"]["email"] for r in result.rejected] == ["user3@example.nl"]
    assert emails(emu) == {f"user{i}@example.nl" for i in range(1, 20)}


def test_a_rejected_record_without_a_key_stops_the_removal(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load(emu, tmp_path, range(20))
    table = [*rows(range(1, 20)), {"firstname": "no e-mail"}]
    with caplog.at_level(logging.WARNING):
        result = run_target(mirror_config(emu, tmp_path), full_table(table))
    assert result.exit_code == 0
    assert len(emails(emu)) == 20
    assert "mirror skipped: 1 rejected record(s)" in caplog.text
    assert "key property ['email'] (the stream's `key_properties`) missing" in caplog.text


def test_a_database_scope_two_routes_reach_is_refused_before_any_write(
    emu: Emulator, tmp_path: Path
) -> None:
    """Whether another stream writes into the scope is decided from the config: a run that
    carries only one of the two streams would otherwise remove the other's profiles."""
    load(emu, tmp_path, range(20))
    before = len(emu.requests)
    database_id = emu.store.database("Warehouse").id
    # The second route names the database by ID: still the same database.
    config = mirror_config(emu, tmp_path, stream_routes={"leads": database_id})
    with pytest.raises(ConfigValidationError, match=r"is routed to by \['customers', 'leads'\]"):
        run_target(config, full_table(rows(range(1, 20))))
    assert [r for r in emu.requests[before:] if r.method != "GET"] == []
    assert len(emails(emu)) == 20


def test_a_marker_field_gives_each_stream_its_own_scope(emu: Emulator, tmp_path: Path) -> None:
    """Two streams share a database; a run with only `customers` leaves the leads alone
    (the reviewer's case: before, both wrote one marker value and the leads were deleted)."""
    config = mirror_config(
        emu,
        tmp_path,
        mirror_scope={"field": "source"},
        stream_routes={"leads": "Warehouse"},
        mirror_max_delete_fraction=1,
    )
    both = [
        *full_table(rows(range(10))),
        *full_table(rows(range(100, 105)), stream="leads"),
    ]
    assert run_target(config, both).exit_code == 0
    sources = {e: p["fields"]["source"] for e, p in profiles_by_email(emu).items()}
    assert sources["user100@example.nl"] == "leads"
    assert sources["user1@example.nl"] == "customers"
    only_customers = run_target(config, full_table(rows(range(9)), VERSION + 1))
    assert only_customers.exit_code == 0
    assert emails(emu) == {f"user{i}@example.nl" for i in [*range(9), *range(100, 105)]}


# -- dry run and unsubscribe ---------------------------------------------------------------
def test_the_dry_run_lists_the_profiles_and_removes_none(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load(emu, tmp_path, range(20))
    ids = {e: p["ID"] for e, p in profiles_by_email(emu).items()}
    config = mirror_config(emu, tmp_path, mirror_dry_run=True)
    with caplog.at_level(logging.INFO):
        result = run_target(config, full_table(rows([i for i in range(20) if i not in (2, 9)])))
    assert result.exit_code == 0
    assert len(emails(emu)) == 20
    assert deletes_sent(emu) == []
    for email in ("user2@example.nl", "user9@example.nl"):
        line = f"mirror dry run: would delete profile {ids[email]} (email={email})"
        assert line in caplog.text
    assert result.summary("customers")["mirror_would_delete"] == 2
    notes = result.target.summaries.for_stream("customers").notes
    # Listed by profile ID (the earlier load wrote them in parallel, in no fixed order).
    listed = ", ".join(
        f"{ids[email]} (email={email})"
        for email in sorted(("user2@example.nl", "user9@example.nl"), key=ids.__getitem__)
    )
    assert notes == [
        f"Stream 'customers': mirror dry run (delete): 2 of 20 profile(s) in scope before "
        f"version {VERSION} are not in it: {listed}."
    ]


@pytest.mark.parametrize(
    ("unsubscribe", "check"),
    [
        ({"field": "Status", "value": "unsubscribed"}, lambda p: p["fields"]["status"]),
        ({"interest": "news", "value": 0}, lambda p: "news" not in p["interests"]),
    ],
    ids=["field", "interest-off"],
)
def test_unsubscribe_mode_marks_the_absent_profiles_instead_of_deleting(
    emu: Emulator, tmp_path: Path, unsubscribe: dict[str, Any], check: Any
) -> None:
    run_target(target_config(emu, tmp_path), full_table(rows(range(20), interests=["news"])))
    config = mirror_config(emu, tmp_path, mirror_mode="unsubscribe", mirror_unsubscribe=unsubscribe)
    table = rows([i for i in range(20) if i != 6], interests=["news"])
    result = run_target(config, full_table(table, VERSION + 1))
    assert result.exit_code == 0
    assert deletes_sent(emu) == []
    profiles = profiles_by_email(emu)
    assert len(profiles) == 20
    changed = {e for e, p in profiles.items() if check(p)}
    assert changed == {"user6@example.nl"}
    assert result.summary("customers")["mirror_unsubscribed"] == 1
    # Already unsubscribed: the next run leaves it, and counts nothing.
    again = run_target(config, full_table(table, VERSION + 2))
    assert "mirror_unsubscribed" not in again.summary("customers")


# -- settings --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mirror_mode": "delete"}, "needs `mirror_scope`"),
        ({"mirror_mode": "delete", "mirror_scope": {}}, "needs `mirror_scope`"),
        (
            {"mirror_mode": "unsubscribe", "mirror_scope": {"database": "Warehouse"}},
            "needs `mirror_unsubscribe`",
        ),
        (
            {"mirror_mode": "delete", "mirror_scope": {"field": "source", "value": "dwh"}},
            "`mirror_scope.value`: one marker value shared by several streams",
        ),
        (
            {"mirror_mode": "delete", "mirror_scope": {"interest": "warehouse"}},
            "an `interest` alone is shared by every stream",
        ),
        (
            {"mirror_mode": "delete", "mirror_scope": {"database": "Warehouse"}},
            "'Warehouse' is also the default `database`",
        ),
        (
            {
                "mirror_mode": "delete",
                "mirror_scope": {"field": "source", "values": {"a": "x", "b": "X"}},
            },
            "streams 'a' and 'b' share marker value 'X'",
        ),
        (
            {
                "mirror_mode": "delete",
                "mirror_scope": {"field": "source", "values": {"a": "b"}},
                "stream_routes": {"b": "Warehouse"},
            },
            r"`mirror_scope.values.a` is 'b', the marker value of stream 'b'",
        ),
        (
            {
                "mirror_mode": "delete",
                "database": None,
                "mirror_scope": {"database": "Warehouse"},
                "stream_routes": {"a": "Warehouse", "b": {"database": "warehouse"}},
            },
            r"'Warehouse' is routed to by streams \['a', 'b'\]",
        ),
        (
            {
                "mirror_mode": "delete",
                "database": None,
                "mirror_scope": {"database": "Warehouse"},
                "stream_routes": {"crm_*": "Warehouse"},
            },
            r"'Warehouse' is routed to by pattern\(s\) \['crm_\*'\]",
        ),
    ],
)
def test_mirror_settings_are_checked_before_any_request(
    emu: Emulator, tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigValidationError, match=message):
        run_target(target_config(emu, tmp_path, **settings), full_table(rows(range(2))))
    assert [r for r in emu.requests if "/v4/" in r.path] == []


def test_a_fraction_outside_0_to_1_is_refused_by_the_cli(emu: Emulator, tmp_path: Path) -> None:
    config = mirror_config(emu, tmp_path, mirror_max_delete_fraction=1.5)
    result = run_cli(
        script("target-copernica"),
        [],
        config=config,
        tmp_path=tmp_path,
        stdin=singer_lines(full_table(rows(range(2)))),
    )
    assert result.exit_code == 1
    assert "`mirror_max_delete_fraction`: '1.5' is not a share between 0 and 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert [r for r in emu.requests if "/v4/" in r.path] == []


def test_an_unknown_marker_field_stops_the_run_before_any_write(
    emu: Emulator, tmp_path: Path
) -> None:
    config = mirror_config(emu, tmp_path, mirror_scope={"field": "origin"})
    with pytest.raises(ConfigValidationError, match=r"`mirror_scope.field` names field 'origin'"):
        run_target(config, full_table(rows(range(2))))
    assert [r for r in emu.requests if r.method != "GET" and "/v4/" in r.path] == []


def test_the_scope_is_listed_by_id_one_page_at_a_time(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyset pages on the profile ID (`fields[]=id>last`), as the key index reads them; the
    page size is cut from 1000 to 10 so that a few dozen profiles take several pages."""
    monkeypatch.setattr(destination, "PAGE", 10)
    load(emu, tmp_path, range(45))
    database = emu.store.database("Warehouse")
    before = len(emu.requests)
    config = mirror_config(emu, tmp_path, mirror_max_delete_fraction=0.5)
    result = run_target(config, full_table(rows(range(0, 45, 2))))
    assert result.exit_code == 0
    assert emails(emu) == {f"user{i}@example.nl" for i in range(0, 45, 2)}
    lists = [
        r.query
        for r in emu.requests[before:]
        if r.method == "GET" and r.path == f"/v4/database/{database.id}/profiles"
    ]
    # The key index (before the first write) and the mirror's scope: 5 pages each.
    assert len(lists) == 10
    assert all(q["limit"] == ["10"] and q["orderby"] == ["id"] for q in lists)
    scope_pages = [q["fields[]"][-1] for q in lists[5:]]
    assert scope_pages[0] == "id>0"
    assert len(set(scope_pages)) == 5, "each page starts after the last ID of the one before"


def test_a_dry_run_above_the_threshold_lists_and_warns_but_succeeds(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load(emu, tmp_path, range(20))
    config = mirror_config(emu, tmp_path, mirror_dry_run=True)
    with caplog.at_level(logging.INFO):
        result = run_target(config, full_table(rows(range(15))))
    assert result.exit_code == 0, "a dry run removes nothing, so it does not fail"
    assert len(emails(emu)) == 20
    assert result.summary("customers")["mirror_would_delete"] == 5
    assert (
        f"a real run would remove none: 5 of 20 profiles in scope before version {VERSION} "
        "would have been removed (25.0% > limit 10.0%); raise mirror_max_delete_fraction or "
        "check the source" in caplog.text
    )


def test_with_mirror_off_an_activate_version_removes_nothing(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load(emu, tmp_path, range(20))
    with caplog.at_level(logging.INFO):
        result = run_target(target_config(emu, tmp_path), full_table(rows(range(3))))
    assert result.exit_code == 0
    assert len(emails(emu)) == 20
    assert f"ACTIVATE_VERSION {VERSION}: `mirror_mode` is off, so no profile is removed" in (
        caplog.text
    )


# -- a full table over several runs, versions, keys ------------------------------------------
def key_files(tmp_path: Path) -> list[str]:
    """The full tables' key files left beside the insert journal."""
    directory = tmp_path / "mirror_keys"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def part(table: list[dict[str, Any]], version: int, bookmark: int) -> list[dict[str, Any]]:
    """One run's part of a full table, without ACTIVATE_VERSION (tap-copernica split by
    `max_requests`, tap-postgres resuming an interrupted full table)."""
    return [
        schema("customers", CUSTOMER_SCHEMA, ["email"]),
        *versioned("customers", table, version),
        state({"bookmarks": {"customers": {"version": version, "xmin": bookmark}}}),
    ]


def test_a_full_table_over_several_runs_keeps_what_the_earlier_runs_sent(
    emu: Emulator, tmp_path: Path
) -> None:
    load(emu, tmp_path, range(40))
    config = mirror_config(emu, tmp_path)
    first = run_target(config, part(rows(range(2)), VERSION, 2))
    assert first.exit_code == 0
    assert key_files(tmp_path) == [f"customers.{VERSION}.jsonl"], "saved before its STATE"
    assert first.states[-1] == {"bookmarks": {"customers": {"version": VERSION, "xmin": 2}}}
    second = run_target(config, part(rows(range(2, 20)), VERSION, 20))
    assert second.exit_code == 0
    last = run_target(
        config, [*part(rows(range(20, 38)), VERSION, 38), activate("customers", VERSION)]
    )
    assert last.exit_code == 0
    # Only the two the table lacked go; before, the last run took its first 20 for absent.
    assert emails(emu) == {f"user{i}@example.nl" for i in range(38)}
    assert len(deletes_sent(emu)) == 2
    assert key_files(tmp_path) == [], "cleaned up once the mirror finished"


def test_a_rerun_after_failed_removals_removes_only_the_absent_ones(
    emu: Emulator, tmp_path: Path
) -> None:
    load(emu, tmp_path, range(40))
    ids = {e: p["ID"] for e, p in profiles_by_email(emu).items()}
    config = mirror_config(emu, tmp_path)
    assert run_target(config, part(rows(range(20)), VERSION, 20)).exit_code == 0
    # The last part; the delete of user38 fails (as if the run had died there).
    emu.faults.add("forbidden403", path=rf"/profile/{ids['user38@example.nl']}$")
    messages = [*part(rows(range(20, 37)), VERSION, 37), activate("customers", VERSION)]
    failed = run_target(config, messages)
    assert failed.exit_code == 3
    assert emails(emu) == {f"user{i}@example.nl" for i in [*range(38), 39]} - {
        "user37@example.nl",
        "user39@example.nl",
    } | {"user38@example.nl"}
    assert failed.summary("customers")["mirror_deleted"] == 2
    assert failed.summary("customers")["mirror_delete_failed"] == 1
    notes = failed.target.summaries.for_stream("customers").notes
    assert any("deleted 2, failed 1 of the 3 profile(s)" in n and "first error" in n for n in notes)
    assert key_files(tmp_path) == [f"customers.{VERSION}.jsonl"], "kept for the rerun"
    emu.faults.clear()
    # The rerun sends the last part again: the first part's 20 are still known as present.
    rerun = run_target(config, messages)
    assert rerun.exit_code == 0
    assert emails(emu) == {f"user{i}@example.nl" for i in range(37)}
    assert rerun.summary("customers")["mirror_deleted"] == 1
    assert key_files(tmp_path) == []


def test_a_record_of_an_older_version_does_not_wipe_the_newer_versions_keys(
    emu: Emulator, tmp_path: Path
) -> None:
    load(emu, tmp_path, range(30))
    messages = [
        schema("customers", CUSTOMER_SCHEMA, ["email"]),
        *versioned("customers", rows(range(2)), VERSION + 1),
        *versioned("customers", rows([29], firstname="Old"), VERSION),  # written, not counted
        *versioned("customers", rows(range(2, 30)), VERSION + 1),
        activate("customers", VERSION + 1),
        activate("customers", VERSION),  # older than the newest: removes nothing
    ]
    result = run_target(mirror_config(emu, tmp_path), messages)
    assert result.exit_code == 0
    assert len(emails(emu)) == 30
    assert deletes_sent(emu) == []


def test_soft_deleted_records_keep_their_profiles_when_hard_delete_is_off(
    emu: Emulator, tmp_path: Path
) -> None:
    load(emu, tmp_path, range(20))
    table = rows(range(19)) + rows([19], _sdc_deleted_at="2024-01-01T00:00:00Z")
    result = run_target(mirror_config(emu, tmp_path), full_table(table))
    assert result.exit_code == 0
    assert "user19@example.nl" in emails(emu)
    assert deletes_sent(emu) == []
    # With hard_delete on, the record deletes its profile itself and the mirror counts it out.
    hard = run_target(
        mirror_config(emu, tmp_path, hard_delete=True), full_table(table, VERSION + 1)
    )
    assert hard.exit_code == 0
    assert emails(emu) == {f"user{i}@example.nl" for i in range(19)}


def test_keys_compare_as_the_writer_matches_them(emu: Emulator, tmp_path: Path) -> None:
    """Whitespace after a key is dropped (Copernica's selectors trim it), so the profile is
    present; whitespace before it is part of the key, as the selectors compare it."""
    load(emu, tmp_path, range(20))
    table = rows(range(20))
    table[5]["email"] = "USER5@example.nl  "  # the same key as user5's
    result = run_target(mirror_config(emu, tmp_path), full_table(table))
    assert result.exit_code == 0
    assert deletes_sent(emu) == [], "user5's key with trailing spaces is user5's key"
    assert [e for e in emails(emu) if "user5@" in e.lower()] == ["USER5@example.nl"]

    emu.store.create_profile("Warehouse", {"email": " user19@example.nl"})  # someone else's
    again = run_target(mirror_config(emu, tmp_path), full_table(rows(range(20)), VERSION + 1))
    assert again.exit_code == 0
    assert " user19@example.nl" not in emails(emu), "a different key: absent, so removed"
    assert "user19@example.nl" in emails(emu)


def test_the_fraction_counts_the_profiles_there_before_and_not_unsubscribed(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load(emu, tmp_path, range(100))
    profiles = profiles_by_email(emu)
    for i in range(50, 100):  # half of them unsubscribed earlier
        emu.store.update_profile(profiles[f"user{i}@example.nl"]["ID"], {"status": "unsubscribed"})
    unsubscribe = {"field": "status", "value": "unsubscribed"}
    config = mirror_config(emu, tmp_path, mirror_mode="unsubscribe", mirror_unsubscribe=unsubscribe)
    # 6 of the 50 subscribed ones left the source: 12% of them (6% of all 100 in scope).
    with caplog.at_level(logging.INFO):
        result = run_target(config, full_table(rows([*range(44), *range(50, 60)])))
    assert result.exit_code == 3
    assert (
        f"6 of 50 profiles in scope before version {VERSION} and not unsubscribed would have "
        f"been removed (12.0% > limit 10.0%)" in caplog.text
    )
    # The 10 unsubscribed ones back in the source stay unsubscribed, and the summary says so.
    notes = result.target.summaries.for_stream("customers").notes
    assert any("10 profile(s) of version" in n and "still unsubscribed" in n for n in notes)


def test_the_dry_run_and_a_real_run_share_the_basis(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load(emu, tmp_path, range(20))
    table = rows([*range(17), *range(100, 150)])  # 3 of 20 gone (15%), 50 new
    with caplog.at_level(logging.INFO):
        dry = run_target(mirror_config(emu, tmp_path, dry_run=True), full_table(table))
    assert dry.exit_code == 0
    assert f"3 of 20 profiles in scope before version {VERSION} would" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        real = run_target(mirror_config(emu, tmp_path), full_table(table))
    assert real.exit_code == 3
    assert f"3 of 20 profiles in scope before version {VERSION} would" in caplog.text


def test_unsubscribe_is_sticky_and_the_summary_says_so(emu: Emulator, tmp_path: Path) -> None:
    load(emu, tmp_path, range(20))
    unsubscribe = {"field": "status", "value": "unsubscribed"}
    config = mirror_config(emu, tmp_path, mirror_mode="unsubscribe", mirror_unsubscribe=unsubscribe)
    assert run_target(config, full_table(rows(range(19)))).exit_code == 0
    back = run_target(config, full_table(rows(range(20)), VERSION + 1))
    assert back.exit_code == 0
    assert profiles_by_email(emu)["user19@example.nl"]["fields"]["status"] == "unsubscribed"
    assert back.target.summaries.for_stream("customers").notes[0] == (
        f"Stream 'customers': 1 profile(s) of version {VERSION + 1} are back in the source but "
        f"still unsubscribed: mirror never subscribes a profile again; undo "
        f"`mirror_unsubscribe` on them yourself if they should get mail."
    )


def test_an_empty_scope_and_an_empty_table_are_warnings(
    emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A dry run into an empty database: nothing written, so no profile in scope.
    with caplog.at_level(logging.WARNING):
        result = run_target(mirror_config(emu, tmp_path, dry_run=True), full_table(rows(range(3))))
    assert result.exit_code == 0
    assert (
        "Stream 'customers': mirror (delete): no profile in scope (database 'Warehouse'); "
        "nothing to delete." in caplog.text
    )
    assert "all 0 profile(s)" not in caplog.text
    assert key_files(tmp_path) == [], "a dry run leaves no file"
    caplog.clear()
    load(emu, tmp_path, range(5))
    with caplog.at_level(logging.WARNING):
        empty = run_target(mirror_config(emu, tmp_path), full_table([]))
    assert empty.exit_code == 0
    assert len(emails(emu)) == 5
    assert (
        f"Stream 'customers': nothing was mirrored: the table had no records (version "
        f"{VERSION} ended without any)" in caplog.text
    )
