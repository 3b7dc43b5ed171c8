"""Selections, unsubscribe behaviour, webhooks and consumption, against the emulator's data."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from singer_sdk.exceptions import ConfigValidationError

from copernica_emulator import Emulator
from copernica_emulator.structure import (
    CONDITION_TYPES,
    Rule,
    consumption,
    data_of,
    minirule_json,
    rule_json,
)
from tap_copernica.streams.structure import ConditionsStream, add_months, months
from tap_copernica.tap import TapCopernica
from tests.conftest import config_for
from tests.singer import sync

SELECTION_STREAMS = [
    "views",
    "view_rules",
    "rule_conditions",
    "miniviews",
    "minirules",
    "miniconditions",
]


@pytest.fixture(scope="module")
def emu() -> Any:
    """One small emulator for the read-only tests of this module."""
    with Emulator(seed=11, profiles_per_database=10) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def selections(emu: Emulator) -> dict[str, list[dict[str, Any]]]:
    result = sync(config_for(emu), streams=SELECTION_STREAMS)
    assert result.exit_code == 0
    return result.records


def by_id(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    ids = [r["ID"] for r in records]
    assert len(ids) == len(set(ids)), "each record exactly once"
    return {r["ID"]: r for r in records}


def test_views_include_nested_views_once_with_their_database(
    emu: Emulator, selections: dict[str, list[dict[str, Any]]]
) -> None:
    data = data_of(emu.store)
    records = by_id(selections["views"])
    assert set(records) == set(data.views), "top-level and nested views, each once"
    nested = [v for v in data.views.values() if v.parent_type == "view"]
    assert len(nested) >= 2, "the seed nests views two levels deep"
    for view_id, record in records.items():
        view = data.views[view_id]
        assert record["database_id"] == view.owner_id
        assert record["name"] == view.name
        assert record["parent-type"] == view.parent_type
        assert record["parent-id"] == view.parent_id
        assert record["has-rules"] is bool(view.rule_ids)
        assert record["last-built"].startswith(view.last_built[:10])
        assert record["last-built"][10] == "T"
        assert "database" not in record
    order = [r["ID"] for r in selections["views"]]
    for view in nested:
        assert order.index(view.parent_id) < order.index(view.id), "parents come first"


def test_view_rules_carry_their_view_and_database(
    emu: Emulator, selections: dict[str, list[dict[str, Any]]]
) -> None:
    data = data_of(emu.store)
    records = by_id(selections["view_rules"])
    assert set(records) == set(data.rules)
    for rule_id, record in records.items():
        rule = data.rules[rule_id]
        assert record["view_id"] == rule.owner_id
        assert record["database_id"] == data.views[rule.owner_id].owner_id
        assert (record["inversed"], record["disabled"]) == (rule.inversed, rule.disabled)
        assert "conditions" not in record, "conditions are their own stream"
    assert any(r["inversed"] for r in records.values())
    assert any(r["disabled"] for r in records.values())


def expected_conditions(rules: dict[int, Rule], render: Any) -> dict[int, tuple[int, dict]]:
    """Condition ID -> (rule ID, the condition as the API embeds it)."""
    out: dict[int, tuple[int, dict]] = {}
    for rule in rules.values():
        for condition in render(rule)["conditions"]["data"]:
            out[int(condition["ID"])] = (rule.id, condition)
    return out


def test_rule_conditions_cover_every_condition_type_with_type_and_parameters(
    emu: Emulator, selections: dict[str, list[dict[str, Any]]]
) -> None:
    data = data_of(emu.store)
    expected = expected_conditions(data.rules, rule_json)
    records = by_id(selections["rule_conditions"])
    assert set(records) == set(expected)
    assert {r["type"] for r in records.values()} == set(CONDITION_TYPES)
    for condition_id, record in records.items():
        rule_id, api = expected[condition_id]
        view_id = data.rules[rule_id].owner_id
        assert record["rule_id"] == rule_id
        assert record["view_id"] == view_id
        assert record["database_id"] == data.views[view_id].owner_id
        assert record["type"] == api["type"]
        assert record["parameters"] == {
            k: v for k, v in api.items() if k not in ("ID", "type", "rule")
        }
    field_condition = next(r for r in records.values() if r["type"] == "Field")
    assert isinstance(field_condition["parameters"]["field"], dict), "nested objects kept"


def test_miniviews_minirules_and_miniconditions(
    emu: Emulator, selections: dict[str, list[dict[str, Any]]]
) -> None:
    data = data_of(emu.store)
    store = emu.store
    miniviews = by_id(selections["miniviews"])
    assert set(miniviews) == set(data.miniviews)
    for view_id, record in miniviews.items():
        collection_id = data.miniviews[view_id].owner_id
        assert record["collection_id"] == collection_id
        assert record["database_id"] == store.collections[collection_id].database_id
        assert record["parent-type"] == "collection"
    minirules = by_id(selections["minirules"])
    assert set(minirules) == set(data.minirules), "lowercase `id` becomes `ID`"
    for rule_id, record in minirules.items():
        rule = data.minirules[rule_id]
        assert record["miniview_id"] == rule.owner_id
        assert record["collection_id"] == data.miniviews[rule.owner_id].owner_id
        assert record["description"] == rule.description
    expected = expected_conditions(data.minirules, minirule_json)
    conditions = by_id(selections["miniconditions"])
    assert set(conditions) == set(expected)
    for condition_id, record in conditions.items():
        rule_id, api = expected[condition_id]
        assert record["minirule_id"] == rule_id
        assert record["miniview_id"] == data.minirules[rule_id].owner_id
        assert record["type"] == api["type"]


def test_only_conditions_selected_still_reads_them_through_their_parents(emu: Emulator) -> None:
    result = sync(config_for(emu), streams=["rule_conditions"])
    assert set(result.records) == {"rule_conditions"}
    assert len(result.records["rule_conditions"]) == len(
        expected_conditions(data_of(emu.store).rules, rule_json)
    )


def test_miniview_rules_fall_back_to_the_overview_path(emulator: Emulator) -> None:
    data_of(emulator.store).minirules_path = "minirules"  # `/rules` now says Invalid method
    result = sync(config_for(emulator), streams=["minirules", "miniconditions"])
    assert result.exit_code == 0
    assert {r["ID"] for r in result.records["minirules"]} == set(data_of(emulator.store).minirules)
    assert result.records["miniconditions"]
    paths = [log.path for log in emulator.requests if log.path.endswith("rules")]
    assert any(p.endswith("/rules") for p in paths)
    assert sum(p.endswith("/rules") for p in paths) == 1, "the fallback is remembered"


def test_unsubscribe_behaviour_of_every_database_and_collection(emu: Emulator) -> None:
    data = data_of(emu.store)
    result = sync(config_for(emu), streams=["database_unsubscribe", "collection_unsubscribe"])
    databases = {r["database_id"]: r for r in result.records["database_unsubscribe"]}
    assert set(databases) == set(emu.store.databases)
    for database_id, record in databases.items():
        api = data.database_unsubscribe[database_id]
        assert record["behavior"] == api["behavior"]
        assert record["fields"] == (api["fields"] or {}), "PHP's empty [] becomes {}"
    collections = {r["collection_id"]: r for r in result.records["collection_unsubscribe"]}
    assert set(collections) == set(emu.store.collections)
    for collection_id, record in collections.items():
        api = data.collection_unsubscribe[collection_id]
        assert record["behavior"] == api["behavior"]
        assert record["fields"] == (api["fields"] or {})
        assert record["database_id"] == emu.store.collections[collection_id].database_id
    assert {r["behavior"] for r in databases.values()} == {"update", "remove", "nothing"}


def test_webhooks_are_read_by_the_configured_ids(emu: Emulator) -> None:
    data = data_of(emu.store)
    config = config_for(emu, webhook_ids=["3", "1", "77", "1"])
    result = sync(config, streams=["webhooks"])
    assert result.exit_code == 0
    records = result.records["webhooks"]
    assert [r["ID"] for r in records] == [3, 1], "in setting order, unknown 77 skipped"
    for record in records:
        api = data.webhooks[record["ID"]]
        assert record == {**api, "ID": int(api["ID"])}

    assert "webhooks" not in sync(config_for(emu), streams=["webhooks"]).records


def test_webhook_ids_must_be_numbers(emu: Emulator) -> None:
    with pytest.raises(ConfigValidationError, match="webhook_ids"):
        sync(config_for(emu, webhook_ids=["hook-one"]), streams=["webhooks"])


def test_consumption_one_record_per_month_then_incremental(emu: Emulator) -> None:
    tz = ZoneInfo("Europe/Amsterdam")
    today = dt.datetime.now(tz).date()
    first = add_months(today.replace(day=1), -3)
    config = config_for(emu, consumption_start_date=first.isoformat())
    result = sync(config, streams=["consumption"])
    records = result.records["consumption"]
    begins = [dt.date.fromisoformat(r["begin"]) for r in records]
    assert begins == [add_months(first, i) for i in range(4)], "three full months + current"
    for record, begin in zip(records, begins, strict=True):
        end = add_months(begin, 1)
        assert record["end"] == end.isoformat()
        assert record["complete"] is (end <= today)
        expected = consumption(begin, end)
        assert {k: record[k] for k in expected} == expected
    assert records[-1]["complete"] is False
    bookmark = result.final_state["bookmarks"]["consumption"]["replication_key_value"]
    assert bookmark == today.replace(day=1).isoformat()

    emu.requests.clear()
    again = sync(config, state=result.final_state, streams=["consumption"])
    assert [r["begin"] for r in again.records["consumption"]] == [bookmark], (
        "the next run reads the current (bookmarked) month again, nothing older"
    )
    asked = [log.query for log in emu.requests if log.path.endswith("/consumption")]
    assert asked == [{"begin": [bookmark], "end": [records[-1]["end"]]}]


def test_consumption_without_a_start_date_reads_a_year_of_months(emu: Emulator) -> None:
    result = sync(config_for(emu), streams=["consumption"])
    assert len(result.records["consumption"]) == 13


def test_month_windows_cross_the_year() -> None:
    assert add_months(dt.date(2024, 11, 1), 3) == dt.date(2025, 2, 1)
    assert add_months(dt.date(2024, 1, 1), -1) == dt.date(2023, 12, 1)
    assert list(months(dt.date(2024, 11, 20), dt.date(2025, 1, 5))) == [
        (dt.date(2024, 11, 1), dt.date(2024, 12, 1)),
        (dt.date(2024, 12, 1), dt.date(2025, 1, 1)),
        (dt.date(2025, 1, 1), dt.date(2025, 2, 1)),
    ]


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_rule_records_take_the_documented_inverted_name_and_hand_over_conditions(
    emu: Emulator,
) -> None:
    tap = TapCopernica(config=config_for(emu), validate_config=False)
    rules = tap.streams["view_rules"]
    conditions = tap.streams["rule_conditions"]
    assert isinstance(conditions, ConditionsStream)
    embedded = {
        "start": 0,
        "limit": 1,
        "count": 1,
        "total": 2,
        "data": [{"ID": "8", "type": "Part"}],
    }
    row = {"ID": "5", "name": "r", "view": "4", "inverted": True, "conditions": embedded}
    handler = ListHandler()
    warnings = handler.messages
    rules.logger.addHandler(handler)
    try:
        record = rules.post_process(row, {"database_id": 1, "view_id": 4})
    finally:
        rules.logger.removeHandler(handler)
    assert record == {"ID": 5, "name": "r", "inversed": True}
    assert conditions.pending[5] == [{"ID": "8", "type": "Part"}]
    assert any("embedded 1 of its 2 conditions" in w for w in warnings)
