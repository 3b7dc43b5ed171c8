"""target-copernica against the emulator over real HTTP: modes, paths, rejects, faults."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from singer_sdk.exceptions import ConfigValidationError

from copernica_api.auth import CopernicaAuthenticator
from copernica_emulator import Emulator
from copernica_emulator.imports import KEY_ORDER_ERROR, registry
from target_copernica import bulk_import
from tests.conftest import config_for
from tests.singer import sync
from tests.target_helpers import (
    CUSTOMER_SCHEMA,
    ORDER_SCHEMA,
    add_warehouse,
    profiles_by_email,
    records,
    run_target,
    schema,
    state,
    target_config,
)

ORDERS_ROUTE = {
    "orders": {
        "collection": "Orders",
        "parent_key_property": "customer_email",
        "key_fields": ["order_id"],
    }
}


def customers(n: int, *, offset: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "email": f"user{i}@example.nl",
            "firstname": f"User {i}",
            "score": i,
            "balance": i / 4,
            "birthdate": f"1990-01-{1 + i % 28:02d}",
            "last_order_at": "2024-03-01T12:00:00Z",
            **extra,
        }
        for i in range(offset, offset + n)
    ]


def customer_messages(
    rows: list[dict[str, Any]], bookmark: int = 1, keys: list[str] | None = None
) -> list[dict[str, Any]]:
    return [
        schema("customers", CUSTOMER_SCHEMA, ["email"] if keys is None else keys),
        *records("customers", rows),
        state({"bookmarks": {"customers": bookmark}}),
    ]


def writes_sent(emu: Emulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in emu.requests if r.method != "GET" and "/v4/" in r.path]


@pytest.fixture
def emu() -> Any:
    with Emulator(seed=3, profiles_per_database=10) as emulator:
        add_warehouse(emulator)
        yield emulator


# -- modes ---------------------------------------------------------------------------------
def test_upsert_twice_is_idempotent(emu: Emulator, tmp_path: Path) -> None:
    config = target_config(emu, tmp_path, write_path="api")
    first = run_target(config, customer_messages(customers(12)))
    assert first.exit_code == 0
    assert first.summary("customers") == {"inserted": 12}
    before = profiles_by_email(emu)
    second = run_target(config, customer_messages(customers(12), bookmark=2))
    assert second.summary("customers") == {"updated": 12}
    after = profiles_by_email(emu)
    assert after == before, "same IDs, fields, interests and `modified`: nothing changed"
    assert len(after) == 12
    sample = after["user5@example.nl"]["fields"]
    assert sample == {
        "email": "user5@example.nl",
        "firstname": "User 5",
        "score": "5",
        "balance": "1.25",
        "birthdate": "1990-01-06",
        "last_order_at": "2024-03-01 13:00:00",  # UTC noon is 13:00 in Amsterdam
    }
    assert second.states == [{"bookmarks": {"customers": 2}}]
    puts = [w for w in writes_sent(emu) if w.startswith("PUT")]
    assert len(puts) == 24
    assert not [w for w in writes_sent(emu) if w.startswith("POST")]


def test_update_only_never_creates(emu: Emulator, tmp_path: Path) -> None:
    run_target(target_config(emu, tmp_path), customer_messages(customers(3)))
    rows = customers(6, firstname="Changed")
    result = run_target(
        target_config(emu, tmp_path, load_method="update-only"), customer_messages(rows)
    )
    assert result.summary("customers") == {"updated": 3, "not_found": 3}
    found = profiles_by_email(emu)
    assert sorted(found) == [f"user{i}@example.nl" for i in range(3)]
    assert {p["fields"]["firstname"] for p in found.values()} == {"Changed"}


def test_append_only_always_creates(emu: Emulator, tmp_path: Path) -> None:
    config = target_config(emu, tmp_path, load_method="append-only")
    run_target(config, customer_messages(customers(4)))
    result = run_target(config, customer_messages(customers(4)))
    assert result.summary("customers") == {"inserted": 4}
    emails = Counter(p["fields"]["email"] for p in emu.store.profiles("Warehouse"))
    assert set(emails.values()) == {2}
    assert all(w.startswith("POST /v4/database/") for w in writes_sent(emu))


def test_overwrite_is_refused_clearly(emu: Emulator, tmp_path: Path) -> None:
    with pytest.raises(ConfigValidationError, match="overwrite"):
        run_target(target_config(emu, tmp_path, load_method="overwrite"), [])


def test_unknown_key_field_refuses_to_start(emu: Emulator, tmp_path: Path) -> None:
    config = target_config(emu, tmp_path, key_fields=["emial"])
    with pytest.raises(ConfigValidationError, match=r"key field\(s\) \['emial'\]"):
        run_target(config, customer_messages(customers(2)))
    assert writes_sent(emu) == [], "not one write: a selector on it would match everything"


def test_selector_values_are_escaped(emu: Emulator, tmp_path: Path) -> None:
    tricky = "a+b&c=d%e#f==g?h@example.nl"
    rows = [{"email": tricky, "firstname": "one"}]
    config = target_config(emu, tmp_path)
    run_target(config, customer_messages(rows))
    result = run_target(config, customer_messages([{**rows[0], "firstname": "two"}]))
    assert result.summary("customers") == {"updated": 1}
    assert [p["fields"]["firstname"] for p in emu.store.profiles("Warehouse")] == ["two"]


def test_a_key_matching_several_profiles_is_reported(emu: Emulator, tmp_path: Path) -> None:
    for _ in range(2):
        emu.store.create_profile("Warehouse", {"email": "twin@example.nl"})
    result = run_target(
        target_config(emu, tmp_path),
        customer_messages([{"email": "twin@example.nl", "firstname": "Both"}]),
    )
    assert result.summary("customers") == {"updated": 1, "multiple_matches": 1}
    assert [p["fields"]["firstname"] for p in emu.store.profiles("Warehouse")] == ["Both"] * 2


def test_interests_as_list_and_as_map(emu: Emulator, tmp_path: Path) -> None:
    config = target_config(emu, tmp_path)
    rows = [
        {"email": "a@example.nl", "interests": ["news", "offers"]},
        {"email": "b@example.nl", "interests": ["offers"]},
    ]
    run_target(config, customer_messages(rows))
    assert {e: p["interests"] for e, p in profiles_by_email(emu).items()} == {
        "a@example.nl": ["news", "offers"],
        "b@example.nl": ["offers"],
    }
    rows = [
        {"email": "a@example.nl", "interests": {"news": False}},  # type: ignore[dict-item]
        {"email": "b@example.nl", "interests": {"news": True}},  # type: ignore[dict-item]
    ]
    run_target(config, customer_messages(rows))
    assert {e: p["interests"] for e, p in profiles_by_email(emu).items()} == {
        "a@example.nl": ["offers"],
        "b@example.nl": ["news", "offers"],
    }


def test_records_with_one_key_are_applied_in_input_order(emu: Emulator, tmp_path: Path) -> None:
    rows = [{"email": f"k{i % 3}@example.nl", "score": i} for i in range(30)]
    run_target(target_config(emu, tmp_path, max_parallel_requests=8), customer_messages(rows))
    assert {e: p["fields"]["score"] for e, p in profiles_by_email(emu).items()} == {
        "k0@example.nl": "27",
        "k1@example.nl": "28",
        "k2@example.nl": "29",
    }


def test_hard_delete_removes_and_soft_delete_skips(emu: Emulator, tmp_path: Path) -> None:
    run_target(target_config(emu, tmp_path), customer_messages(customers(3)))
    gone = [{"email": "user1@example.nl", "_sdc_deleted_at": "2024-05-01T00:00:00Z"}]
    soft = run_target(target_config(emu, tmp_path), customer_messages(gone))
    assert soft.summary("customers") == {"deletes_skipped": 1}
    assert len(profiles_by_email(emu)) == 3
    hard = run_target(target_config(emu, tmp_path, hard_delete=True), customer_messages(gone))
    assert hard.summary("customers") == {"deleted": 1}
    assert sorted(profiles_by_email(emu)) == ["user0@example.nl", "user2@example.nl"]
    again = run_target(target_config(emu, tmp_path, hard_delete=True), customer_messages(gone))
    assert again.summary("customers") == {"not_found": 1}


def test_v2_style_answers_are_understood(emu: Emulator, tmp_path: Path) -> None:
    emu.store.extensions["write_style"] = "v2"  # 303 + Location, X-Created, 200 + X-deleted
    config = target_config(emu, tmp_path, hard_delete=True, stream_routes=ORDERS_ROUTE)
    first = run_target(config, customer_messages(customers(3)) + order_messages(3))
    assert first.summary("customers") == {"inserted": 3}
    assert first.summary("orders") == {"inserted": 3}
    second = run_target(config, customer_messages(customers(3)) + order_messages(3))
    assert second.summary("customers") == {"updated": 3}
    assert second.summary("orders") == {"updated": 3}
    gone = [{"email": "user0@example.nl", "_sdc_deleted_at": "2024-05-01T00:00:00Z"}]
    assert run_target(config, customer_messages(gone)).summary("customers") == {"deleted": 1}


def test_dry_run_writes_nothing(emu: Emulator, tmp_path: Path) -> None:
    run_target(target_config(emu, tmp_path), customer_messages(customers(2)))
    before = len(emu.requests)
    result = run_target(target_config(emu, tmp_path, dry_run=True), customer_messages(customers(5)))
    assert result.summary("customers") == {"updated": 2, "inserted": 3}
    assert [r for r in emu.requests[before:] if r.method != "GET"] == []


def test_create_missing_fields_types_them_from_the_schema(emu: Emulator, tmp_path: Path) -> None:
    wide = {
        **CUSTOMER_SCHEMA["properties"],
        "visits": {"type": "integer"},
        "vip_since": {"type": "string", "format": "date"},
    }
    messages = [
        schema("customers", {"type": "object", "properties": wide}),
        *records("customers", [{"email": "n@example.nl", "visits": 7, "vip_since": "2020-02-02"}]),
    ]
    refused = run_target(target_config(emu, tmp_path), messages)
    assert refused.summary("customers") == {"rejected": 1}
    assert "do not exist in database 'Warehouse'" in refused.rejected[0]["reason"]
    result = run_target(target_config(emu, tmp_path, create_missing_fields=True), messages)
    assert result.summary("customers") == {"inserted": 1}
    types = {f.name: f.type for f in emu.store.database("Warehouse").fields}
    assert types["visits"] == "integer"
    assert types["vip_since"] == "empty_date"
    assert profiles_by_email(emu)["n@example.nl"]["fields"]["visits"] == "7"


# -- subprofiles ---------------------------------------------------------------------------
def order_messages(n: int, **extra: Any) -> list[dict[str, Any]]:
    rows = [
        {
            "order_id": f"o{i}",
            "customer_email": f"user{i % 3}@example.nl",
            "amount": i + 0.5,
            **extra,
        }
        for i in range(n)
    ]
    return [schema("orders", ORDER_SCHEMA, ["order_id"]), *records("orders", rows)]


def orders_by_parent(emu: Emulator) -> dict[str, list[tuple[str, str]]]:
    emails = {int(p["ID"]): e for e, p in profiles_by_email(emu).items()}
    found: dict[str, list[tuple[str, str]]] = {}
    for sub in emu.store.subprofiles(emu.store.collection_id("Warehouse", "Orders")):
        found.setdefault(emails[int(sub["profile"])], []).append(
            (sub["fields"]["order_id"], sub["fields"]["amount"])
        )
    return {k: sorted(v) for k, v in sorted(found.items())}


def test_subprofiles_land_under_their_parent(emu: Emulator, tmp_path: Path) -> None:
    config = target_config(emu, tmp_path, stream_routes=ORDERS_ROUTE, batch_size_rows=2)
    messages = [
        *customer_messages(customers(3)),
        *order_messages(7),
        *records("orders", [{"order_id": "x", "customer_email": "nobody@example.nl"}]),
    ]
    first = run_target(config, messages)
    expected = {
        "user0@example.nl": [("o0", "0.5"), ("o3", "3.5"), ("o6", "6.5")],
        "user1@example.nl": [("o1", "1.5"), ("o4", "4.5")],
        "user2@example.nl": [("o2", "2.5"), ("o5", "5.5")],
    }
    assert orders_by_parent(emu) == expected
    assert first.summary("orders") == {"inserted": 7, "rejected": 1}
    assert "no profile with email == 'nobody@example.nl'" in first.rejected[0]["reason"]
    second = run_target(config, messages)
    assert orders_by_parent(emu) == expected, "upserting again adds no subprofile"
    assert second.summary("orders") == {"updated": 7, "rejected": 1}


def test_subprofiles_find_parents_a_running_import_is_still_adding(
    emu: Emulator, tmp_path: Path
) -> None:
    """A full batch of subprofiles first writes the parents read before it (an import, which
    runs on in the background) and must wait for that import before looking them up."""
    registry(emu.store).step_seconds = 0.05  # 40 rows in 0.1 s: still running when asked
    config = target_config(
        emu, tmp_path, stream_routes=ORDERS_ROUTE, write_path="bulk", batch_size_rows=30
    )
    parents = customer_messages(customers(20))[:-1]  # under a batch: drained by the orders
    result = run_target(config, [*parents, *order_messages(30)])
    assert result.rejected == []
    assert result.summary("orders") == {"inserted": 30}
    assert len(orders_by_parent(emu)["user0@example.nl"]) == 10


# -- bulk imports --------------------------------------------------------------------------
def snapshot(emu: Emulator) -> dict[str, tuple[dict[str, str], list[str]]]:
    return {e: (p["fields"], p["interests"]) for e, p in profiles_by_email(emu).items()}


def test_bulk_import_path_equals_api_path(tmp_path: Path) -> None:
    results = {}
    summaries = {}
    for path in ("api", "bulk", "auto"):
        with Emulator(seed=3, profiles_per_database=5) as emu:
            add_warehouse(emu)
            emu.store.create_profile("Warehouse", {"email": "user3@example.nl", "score": "99"})
            config = target_config(emu, tmp_path / path, write_path=path, bulk_threshold_rows=20)
            rows = [*customers(30), {"email": "user4@example.nl", "firstname": "Last wins"}]
            run = run_target(config, customer_messages(rows))
            results[path] = snapshot(emu)
            summaries[path] = run.summary("customers")
            if path != "api":
                posted = registry(emu.store).posted
                assert len(posted) == 1, "user4's two records are one row"
                assert posted[0]["action"] == "update or add"
                assert posted[0]["keyFields"] == ["email"]
    assert results["bulk"] == results["api"] == results["auto"]
    assert results["api"]["user4@example.nl"][0]["firstname"] == "Last wins"
    # user3 existed; user4 comes twice: written once, as the last record leaves it.
    assert results["api"]["user4@example.nl"][0]["score"] == "4"
    assert summaries["api"] == {"inserted": 29, "updated": 1, "superseded": 1}
    assert summaries["bulk"] == {"inserted": 29, "updated": 1, "superseded": 1, "imports": 1}


def test_an_import_left_running_ends_before_the_next_batch_is_written(
    emu: Emulator, tmp_path: Path
) -> None:
    """The last import of a batch runs on while the next batch is read; it must still end
    before that batch's import starts, or a key's later values could lose to earlier ones."""
    first = customers(8, firstname="first")
    second = customers(8, firstname="second")
    messages = customer_messages([*first, *second])
    config = target_config(emu, tmp_path, write_path="bulk", batch_size_rows=8)
    run = run_target(config, messages)
    assert run.summary("customers") == {"inserted": 8, "updated": 8, "imports": 2}
    assert {p["fields"]["firstname"] for p in emu.store.profiles("Warehouse")} == {"second"}
    assert run.states == [messages[-1]["value"]]


def test_import_rows_share_one_column_order_with_the_keys_first(
    emu: Emulator, tmp_path: Path
) -> None:
    """The API refuses import rows whose key columns come in another order than the first row's."""
    rows = [
        {"firstname": "A", "score": 1, "email": "a@b.nl"},
        {"firstname": "B", "score": 2, "email": "b@b.nl"},
        {"email": "c@b.nl", "score": 3, "firstname": "C"},
    ]
    run_target(target_config(emu, tmp_path, write_path="bulk"), customer_messages(rows))
    sent = registry(emu.store).posted[0]["source"]
    assert [list(row) for row in sent] == [["email", "firstname", "score"]] * 3
    assert sent[2] == {"email": "c@b.nl", "firstname": "C", "score": "3"}


def test_a_failed_import_is_retried_through_the_api(emu: Emulator, tmp_path: Path) -> None:
    imports = registry(emu.store)
    imports.fail_after, imports.fail_times = 10, 1
    config = target_config(emu, tmp_path, write_path="bulk")
    result = run_target(config, customer_messages(customers(40)))
    # The import created 10 before it failed; the API path then updates those.
    assert result.summary("customers") == {
        "inserted": 30,
        "updated": 10,
        "imports": 1,
        "import_fallbacks": 40,
    }
    assert len(profiles_by_email(emu)) == 40
    assert imports.jobs[1].lasterror == imports.fail_message


def test_a_failed_append_import_resends_only_unprocessed_rows(
    emu: Emulator, tmp_path: Path
) -> None:
    imports = registry(emu.store)
    imports.fail_after, imports.fail_times = 25, 1
    config = target_config(emu, tmp_path, write_path="bulk", load_method="append-only")
    result = run_target(config, customer_messages(customers(40)))
    assert result.summary("customers") == {"inserted": 40, "imports": 1, "import_fallbacks": 15}
    emails = Counter(p["fields"]["email"] for p in emu.store.profiles("Warehouse"))
    assert len(emails) == 40
    assert set(emails.values()) == {1}


def test_emulator_import_rows_with_another_key_order_fail(emu: Emulator) -> None:
    jwt = CopernicaAuthenticator(api_token=emu.api_token, auth_url=emu.auth_url).current_jwt()
    body = {
        "database": "Warehouse",
        "action": "update or add",
        "keyFields": ["email"],
        "source": [{"email": "a@x.nl", "firstname": "A"}, {"firstname": "B", "email": "b@x.nl"}],
    }
    headers = {"Authorization": f"Bearer {jwt}"}
    posted = requests.post(f"{emu.api_url}/imports", json=body, headers=headers, timeout=5)
    assert posted.status_code == 201
    registry(emu.store).wait()
    status = requests.get(
        f"{emu.api_url}/import/{posted.headers['X-Created']}", headers=headers, timeout=5
    ).json()
    assert status["lasterror"] == KEY_ORDER_ERROR
    assert status["processedlines"] == "0"
    assert status["totallines"] == "2"
    assert emu.store.profiles("Warehouse") == []


# -- rejects, state, faults ----------------------------------------------------------------
def test_bad_records_are_rejected_with_reasons_and_the_rest_land(
    emu: Emulator, tmp_path: Path
) -> None:
    emu.store.extensions["refused_domains"] = ("@126.com",)
    bad: list[dict[str, Any]] = [
        {"email": "schema@example.nl", "score": "many"},  # not an integer per SCHEMA
        {"firstname": "No key"},
        {"email": "", "firstname": "Empty key"},
        {"email": "date@example.nl", "birthdate": "not a date"},
        {"email": "spam@126.com"},
        {"email": "extra@example.nl", "shoe_size": 44},
    ]
    rows = [*customers(5), *bad]
    config = target_config(emu, tmp_path, fail_on_rejected=True)
    result = run_target(config, customer_messages(rows, keys=[]))
    assert result.exit_code == 2
    assert result.states == [{"bookmarks": {"customers": 1}}], "state still written"
    assert result.summary("customers") == {"inserted": 5, "rejected": 6}
    assert sorted(profiles_by_email(emu)) == [f"user{i}@example.nl" for i in range(5)]
    reasons = {r["record"].get("email", "-"): r["reason"] for r in result.rejected}
    assert "does not match the stream's SCHEMA" in reasons["schema@example.nl"]
    assert reasons["-"] == "key field 'email' is missing or empty"
    assert reasons[""] == "key field 'email' is missing or empty"
    assert "Could not parse value 'not a date' for field 'birthdate'" in reasons["date@example.nl"]
    assert "Failed to create profile" in reasons["spam@126.com"]
    assert "['shoe_size'] do not exist" in reasons["extra@example.nl"]
    assert {r["stream"] for r in result.rejected} == {"customers"}
    text = (tmp_path / "rejected.jsonl").read_text()
    assert emu.api_token not in text
    assert "Bearer" not in text


def test_no_state_is_emitted_when_writes_did_not_happen(emu: Emulator, tmp_path: Path) -> None:
    emu.faults.add("html503", path=r"/profiles$")
    config = target_config(emu, tmp_path, max_retries=1, retry_initial_wait_ms=1)
    messages = [state({"before": 1}), *customer_messages(customers(2))]
    result = run_target(config, messages, catch=True)
    assert "Gave up on GET /v4/database/4/profiles after 2 attempts" in str(result.error)
    assert result.states == [{"before": 1}], "only the state before the records is confirmed"
    assert profiles_by_email(emu) == {}


@pytest.mark.parametrize(
    ("load_method", "write_path"),
    [("upsert", "api"), ("append-only", "api"), ("upsert", "bulk")],
)
def test_ten_percent_faults_every_record_lands_exactly_once(
    tmp_path: Path, load_method: str, write_path: str
) -> None:
    with Emulator(seed=3, profiles_per_database=5) as emu:
        add_warehouse(emu)
        kinds = [
            "html503",
            "gateway504",
            "ratelimit429",
            "reset",
            "truncate",
            "drop_after",
        ]
        for n, kind in enumerate(kinds):
            emu.faults.add(kind, rate=0.1 / len(kinds), seed=n)
        # A JWT refused twice in a row is a configuration error (fatal by design): once.
        emu.faults.add("expire_jwt", after=20, times=1)
        config = target_config(
            emu,
            tmp_path,
            load_method=load_method,
            write_path=write_path,
            stream_routes=ORDERS_ROUTE,
            max_retries=8,
            retry_initial_wait_ms=5,
        )
        messages = [*customer_messages(customers(40)), *order_messages(30)]
        result = run_target(config, messages)
        assert result.exit_code == 0
        assert len(emu.faults.injected) >= 5, "the faults really happened"
        assert emu.tokens_issued >= 2, "a refused JWT was renewed"
        emails = Counter(p["fields"]["email"] for p in emu.store.profiles("Warehouse"))
        assert len(emails) == 40
        assert set(emails.values()) == {1}
        counts = result.summary("customers")
        assert counts.get("inserted", 0) + counts.get("updated", 0) == 40
        assert counts.get("imports", 0) == (1 if write_path == "bulk" else 0)
        orders = orders_by_parent(emu)
        assert sum(len(v) for v in orders.values()) == 30
        assert len({o for v in orders.values() for o, _ in v}) == 30
        assert result.rejected == []


def test_an_insert_whose_answer_was_lost_is_not_sent_twice(tmp_path: Path) -> None:
    with Emulator(seed=3, profiles_per_database=5) as emu:
        add_warehouse(emu)
        # The second POST is handled, then its connection drops.
        emu.faults.add("drop_after", path=r"/database/4/profiles$", times=1, after=2)
        config = target_config(emu, tmp_path, load_method="append-only")
        result = run_target(config, customer_messages(customers(3)))
        assert result.summary("customers") == {"inserted": 3}
        assert len(emu.faults.injected) == 1
        emails = Counter(p["fields"]["email"] for p in emu.store.profiles("Warehouse"))
        assert emails == Counter({f"user{i}@example.nl": 1 for i in range(3)})


# -- the tap's output loads back -----------------------------------------------------------
def test_tap_profiles_load_into_an_empty_database_unchanged(tmp_path: Path) -> None:
    with Emulator(seed=7, profiles_per_database=60) as source, Emulator(seed=8) as dest:
        tap = sync(config_for(source, database_ids=["Customers"]), streams=["profiles"])
        rows = tap.records["profiles"]
        assert len(rows) == 60
        blank = dest.store.add_database("Copy")
        for f in source.store.database("Customers").fields:
            dest.store.add_field("database", blank, f.name, f.type, f.value)
        for interest in source.store.database("Customers").interests:
            dest.store.add_interest(blank, interest.name, interest.group)
        profile_schema = next(
            m["schema"] for m in tap.messages if m["type"] == "SCHEMA" and m["stream"] == "profiles"
        )
        config = target_config(dest, tmp_path, database="Copy")
        result = run_target(
            config, [schema("profiles", profile_schema, ["ID"]), *records("profiles", rows)]
        )
        assert result.summary("profiles") == {"inserted": 60}
        original = {
            p["fields"]["email"]: (p["fields"], p["interests"])
            for p in source.store.profiles("Customers")
        }
        copied = {
            p["fields"]["email"]: (p["fields"], p["interests"]) for p in dest.store.profiles("Copy")
        }
        assert copied == original


def most_in_flight(emu: Emulator, latency: float) -> int:
    """Writes that were in flight together: each took at least `latency` before its answer."""
    ends = sorted(r.at for r in emu.requests if r.method == "PUT")
    return max(sum(1 for other in ends if end - latency < other <= end) for end in ends)


def test_requests_run_in_parallel_up_to_the_limit(tmp_path: Path) -> None:
    in_flight = {}
    for parallel in (1, 8):
        with Emulator(seed=3, profiles_per_database=5) as emu:
            add_warehouse(emu)
            emu.faults.latency_ms = 40
            config = target_config(emu, tmp_path, max_parallel_requests=parallel)
            run_target(config, customer_messages(customers(24)))
            in_flight[parallel] = most_in_flight(emu, 0.04)
    assert in_flight[1] == 1
    assert 4 <= in_flight[8] <= 8


def test_retry_after_is_honoured_on_writes(emu: Emulator, tmp_path: Path) -> None:
    emu.faults.add("ratelimit429", path=r"/database/4/profiles$", times=1, after=1)
    config = target_config(emu, tmp_path, retry_initial_wait_ms=0)
    result = run_target(config, customer_messages(customers(1)))
    assert result.summary("customers") == {"inserted": 1}
    puts = [r for r in emu.requests if r.method == "PUT"]
    assert [r.status for r in puts] == [429, 201]
    assert puts[1].at - puts[0].at >= 0.75, "waited about the 1 s Retry-After"


def test_a_large_load_goes_through_chunked_imports_and_reruns_as_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_import, "ROWS_PER_IMPORT", 300)
    with Emulator(seed=3, profiles_per_database=5) as emu:
        add_warehouse(emu)
        config = target_config(emu, tmp_path, bulk_threshold_rows=500, batch_size_rows=1000)
        first = run_target(config, customer_messages(customers(1200)))
        assert first.summary("customers") == {"inserted": 1200, "imports": 4}
        second = run_target(config, customer_messages(customers(1200)))
        assert second.summary("customers") == {"updated": 1200, "imports": 4}
        assert len(emu.store.profiles("Warehouse")) == 1200
        key_reads = [r for r in emu.requests if r.method == "GET" and r.path.endswith("/profiles")]
        assert len(key_reads) == 1 + 2, "keys read once per run, 1000 per request"
        puts = [r for r in emu.requests if r.method == "PUT"]
        assert len(puts) == 2 * 200, "only the last, small batch of each run went per record"


def test_keys_are_read_by_offset_when_a_field_is_called_id(tmp_path: Path) -> None:
    with Emulator(seed=3, profiles_per_database=5) as emu:
        db = emu.store.add_database("Keyed")
        emu.store.add_field("database", db, "id", "text")
        emu.store.add_field("database", db, "name", "text")
        for n in range(1100):
            emu.store.create_profile(db, {"id": f"p{n}", "name": "x"})
        rows = [{"id": "p1099", "name": "old"}, {"id": "p5000", "name": "new"}]
        messages = [
            schema("keyed", {"type": "object", "properties": {"id": {}, "name": {}}}),
            *records("keyed", rows),
        ]
        config = target_config(emu, tmp_path, database="Keyed", key_fields=["id"], dry_run=True)
        result = run_target(config, messages)
        assert result.summary("keyed") == {"updated": 1, "inserted": 1}
        reads = [r for r in emu.requests if r.method == "GET" and r.path.endswith("/profiles")]
        assert [r.query.get("start") for r in reads] == [["0"], ["1000"]]
