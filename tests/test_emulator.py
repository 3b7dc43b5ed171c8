"""Tests of the Copernica REST v4 emulator, exercised over real HTTP with ``requests``."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from copernica_emulator import Emulator, RequestLog

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 5


class Client:
    """A minimal API client: one keep-alive session with a Bearer JWT."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.session = requests.Session()
        reply = self.session.post(
            emu.auth_url, data={"access_token": emu.api_token}, timeout=TIMEOUT
        )
        assert reply.status_code == 200
        self.jwt = reply.text.strip()
        self.session.headers["Authorization"] = f"Bearer {self.jwt}"

    def get(self, path: str, params: Any = None, timeout: float = TIMEOUT) -> requests.Response:
        return self.session.get(self.emu.api_url + path, params=params, timeout=timeout)

    def json(self, path: str, params: Any = None) -> Any:
        reply = self.get(path, params)
        assert reply.status_code == 200, reply.text
        assert reply.headers["Content-Type"] == "application/json"
        return reply.json()

    def rows(self, path: str, params: Any = None) -> list[dict[str, Any]]:
        params = {"limit": 1000, **(params or {})}
        data: list[dict[str, Any]] = self.json(path, params)["data"]
        return data


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """Shared read-only emulator (tests that change data build their own)."""
    with Emulator(seed=42, profiles_per_database=200) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(emu: Emulator) -> Client:
    return Client(emu)


@pytest.fixture
def fresh() -> Iterator[Emulator]:
    with Emulator(seed=7, profiles_per_database=40) as emulator:
        yield emulator


def jwt_payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return payload


# --------------------------------------------------------------------------- authentication
def test_auth_text_mode_returns_bare_jwt(emu: Emulator) -> None:
    before = emu.tokens_issued
    reply = requests.post(emu.auth_url, data={"access_token": emu.api_token}, timeout=TIMEOUT)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/plain"
    assert reply.text.count(".") == 2
    payload = jwt_payload(reply.text)
    assert abs(payload["exp"] - (time.time() + 86400)) < 5
    assert {"iat", "jti"} <= payload.keys()
    assert emu.tokens_issued == before + 1
    assert "Date" in reply.headers


def test_auth_json_mode_and_query_string_token() -> None:
    with Emulator(seed=1, profiles_per_database=4, auth_response="json") as emu:
        reply = requests.post(emu.auth_url, params={"access_token": emu.api_token}, timeout=5)
        assert reply.status_code == 200
        assert reply.headers["Content-Type"] == "application/json"
        token = reply.json()["access_token"]
        api = requests.get(
            emu.api_url + "/identity", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert api.status_code == 200
        assert api.json()["ID"] == "1"


@pytest.mark.parametrize("data", [{"access_token": "wrong"}, {}, {"token": "x"}])
def test_auth_rejects_invalid_or_missing_token(emu: Emulator, data: dict[str, str]) -> None:
    reply = requests.post(emu.auth_url, data=data, timeout=TIMEOUT)
    assert reply.status_code == 400
    assert reply.json() == {"error": {"message": "Invalid access token"}}


@pytest.mark.parametrize(
    "header",
    [None, "Bearer nonsense", "Bearer a.b.c", "{jwt}", "Bearer {jwt}x", "Basic {jwt}"],
)
def test_api_rejects_missing_or_bad_jwt(emu: Emulator, client: Client, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header.format(jwt=client.jwt)}
    reply = requests.get(emu.api_url + "/identity", headers=headers, timeout=TIMEOUT)
    assert reply.status_code == 401
    assert reply.json() == {"error": {"message": "Invalid access token"}}
    assert emu.requests[-1].authorized is False


def test_expired_jwt_is_rejected() -> None:
    with Emulator(seed=1, profiles_per_database=4, jwt_lifetime=1) as emu:
        client = Client(emu)
        assert client.get("/identity").status_code == 200
        time.sleep(1.1)
        reply = client.get("/identity")
        assert reply.status_code == 401
        assert reply.json()["error"]["message"] == "Invalid access token"


def test_expired_status_400_mode() -> None:
    with Emulator(seed=1, profiles_per_database=4, expired_status=400) as emu:
        reply = requests.get(emu.api_url + "/identity", timeout=TIMEOUT)
        assert reply.status_code == 400
        assert reply.json() == {"error": {"message": "Invalid access token"}}


# --------------------------------------------------------------------------- structure
def test_databases_and_structure_shapes(client: Client) -> None:
    body = client.json("/databases")
    assert [d["name"] for d in body["data"]] == ["Customers", "Newsletter", "Legacy"]
    assert body["total"] == 3
    customers = body["data"][0]
    assert customers["archived"] is False
    for key in ("fields", "interests", "collections"):
        assert set(customers[key]) == {"start", "limit", "count", "total", "data"}
    assert client.json("/database/1") == customers
    fields = client.rows("/database/1/fields")
    types = {f["type"] for f in fields}
    assert {
        "text",
        "email",
        "phone_gsm",
        "phone_fax",
        "select",
        "big",
        "integer",
        "float",
        "date",
        "empty_date",
        "datetime",
        "empty_datetime",
        "foreign_key",
    } <= types
    segment = next(f for f in fields if f["name"] == "segment")
    assert segment["value"] == "gold\nsilver\nbronze"
    for field in fields:
        assert isinstance(field["ID"], str)
        assert isinstance(field["length"], str)
        assert isinstance(field["textlines"], str)
        assert all(isinstance(field[k], bool) for k in ("displayed", "ordered", "hidden", "index"))
    interests = client.rows("/database/1/interests")
    assert [(i["name"], i["group"]) for i in interests] == [
        ("news", "mail"),
        ("offers", "mail"),
        ("events", "mail"),
    ]
    collections = client.rows("/database/1/collections")
    assert [c["name"] for c in collections] == ["Orders", "Tickets"]
    assert all(c["database"] == "1" for c in collections)
    orders = client.json(f"/collection/{collections[0]['ID']}")
    assert [f["name"] for f in orders["fields"]["data"]] == [
        "order_id",
        "amount",
        "ordered_at",
        "quantity",
    ]
    assert [f["name"] for f in client.rows(f"/collection/{orders['ID']}/fields")] == [
        "order_id",
        "amount",
        "ordered_at",
        "quantity",
    ]
    assert client.json("/identity").keys() == {"ID", "name", "description", "company"}


def test_names_work_as_ids_case_insensitively(client: Client) -> None:
    by_id = client.json("/database/1/profiles", {"limit": 5})
    by_name = client.json("/database/cUsToMeRs/profiles", {"limit": 5})
    assert by_name["data"] == by_id["data"]
    orders_id = client.json("/collection/ORDERS")["ID"]
    assert client.json("/collection/orders/subprofileids") == client.json(
        f"/collection/{orders_id}/subprofileids"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/database/999/profiles", "No database with supplied ID"),
        ("/database/nope/fields", "No database with supplied ID"),
        ("/collection/999/subprofiles", "No collection with given ID"),
        ("/profile/999999", "No entity with supplied ID"),
        ("/profile/abc", "No entity with supplied ID"),
        ("/subprofile/999999", "No subprofile with supplied ID"),
        ("/PROFILE/1", "Invalid method"),
        ("/database/1/bogus", "Invalid method"),
        ("/nothing", "Invalid method"),
        ("/profile/1/extra", "Invalid method"),
        ("/database", "Invalid request, element 1 is missing in 'directory' path"),
    ],
)
def test_error_messages(client: Client, path: str, message: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 400
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json() == {"error": {"message": message}}


def test_doubled_and_trailing_slashes_are_ignored(client: Client) -> None:
    normal = client.json("/database/1/profiles", {"limit": 3})
    assert client.json("//database//1/profiles/", {"limit": 3})["data"] == normal["data"]


# --------------------------------------------------------------------------- paging
def test_paging_start_is_an_offset(client: Client) -> None:
    everything = client.json("/database/1/profiles", {"limit": 1000})
    assert everything["total"] == everything["count"] == 200
    ids = [int(p["ID"]) for p in everything["data"]]
    assert ids == sorted(ids)
    seen: list[int] = []
    start = 0
    while True:
        page = client.json("/database/1/profiles", {"start": start, "limit": 30})
        assert page["start"] == start
        assert page["limit"] == 30
        assert page["count"] == len(page["data"])
        assert page["total"] == 200
        seen += [int(p["ID"]) for p in page["data"]]
        if page["count"] < 30:
            break
        start += page["count"]
    assert seen == ids


def test_paging_defaults_caps_and_negative_values(client: Client) -> None:
    default = client.json("/database/1/profiles")
    assert (default["start"], default["limit"], default["count"]) == (0, 100, 100)
    capped = client.json("/database/1/profiles", {"limit": 5000})
    assert capped["limit"] == 1000
    assert capped["count"] == 200
    for params in ({"start": -5, "limit": 10}, {"start": 0, "limit": -1}):
        body = client.json("/database/1/profiles", params)
        assert body["start"] == params["start"]
        assert body["limit"] == params["limit"]
        assert body["count"] == 0
        assert body["data"] == []
    assert client.json("/database/1/profiles", {"start": 500})["data"] == []


@pytest.mark.parametrize(
    ("value", "present"),
    [
        ("false", False),
        ("no", False),
        ("0", False),
        ("0.5", False),
        ("thisisfalse", False),
        ("true", True),
        ("YES", True),
        ("1", True),
        ("-2", True),
    ],
)
def test_total_truthiness(client: Client, value: str, present: bool) -> None:
    body = client.json("/database/1/profiles", {"limit": 2, "total": value})
    assert ("total" in body) is present
    assert body["count"] == 2


def test_parameter_names_are_case_sensitive(client: Client) -> None:
    body = client.json("/database/1/profiles", {"LIMIT": 3, "starT": 5})
    assert (body["start"], body["limit"]) == (0, 100)


def test_structure_lists_are_paged(client: Client) -> None:
    body = client.json("/database/1/fields", {"start": 2, "limit": 3, "total": "false"})
    assert body["count"] == 3
    assert "total" not in body
    assert [f["name"] for f in body["data"]] == ["city", "email", "mobile"]


# --------------------------------------------------------------------------- filters
def profiles(client: Client, *filters: str, **params: Any) -> list[dict[str, Any]]:
    return client.rows("/database/1/profiles", {"fields[]": list(filters), **params})


def test_filter_operators(client: Client) -> None:
    everyone = profiles(client)
    ages = [int(p["fields"]["age"]) for p in profiles(client, "age>50")]
    assert ages
    assert all(age > 50 for age in ages)  # numeric, not string, comparison
    assert len(ages) == sum(int(p["fields"]["age"]) > 50 for p in everyone)
    assert all(int(p["fields"]["age"]) >= 60 for p in profiles(client, "age>=60"))
    assert [int(p["ID"]) for p in profiles(client, "id>190")] == list(range(191, 201))
    assert [p["ID"] for p in profiles(client, "id==7")] == ["7"]
    like = profiles(client, "email=~%1@example.com")
    assert like
    assert all(p["fields"]["email"].endswith("1@example.com") for p in like)
    not_like = profiles(client, "email!~%1@example.com")
    assert len(like) + len(not_like) == 200
    underscore = profiles(client, "email=~_nna.%")
    assert {p["fields"]["firstname"] for p in underscore} == {"Anna"}
    both = profiles(client, "age>30", "age<40")
    assert all(30 < int(p["fields"]["age"]) < 40 for p in both)
    empty_city = profiles(client, "city==")
    assert empty_city
    assert all(p["fields"]["city"] == "" for p in empty_city)
    assert len(profiles(client, "city!=")) + len(empty_city) == 200
    assert len(profiles(client, "city<>")) + len(empty_city) == 200


def test_filter_case_rules(client: Client) -> None:
    annas = profiles(client, "firstname==Anna")
    assert annas
    assert profiles(client, "FIRSTNAME==aNNA") == annas  # names and text values: any case
    golds = profiles(client, "segment==gold")
    assert golds
    assert profiles(client, "segment==GOLD") == []  # select values are case-sensitive


def test_filter_spacing_and_unknown_names(client: Client) -> None:
    total = len(profiles(client))
    assert len(profiles(client, "nosuchfield==1")) == total
    assert len(profiles(client, "firstname ==Anna")) == total  # space before op: unknown name
    assert profiles(client, "firstname== Anna") == []  # space after op is part of the value
    assert profiles(client, "  firstname==Anna  ") == profiles(client, "firstname==Anna")
    indexed = client.rows("/database/1/profiles", {"fields[0]": "id<=3", "fields[1]": "id>1"})
    assert [p["ID"] for p in indexed] == ["2", "3"]
    scalar = client.rows("/database/1/profiles", {"fields": "id<=3"})
    assert len(scalar) == total  # a non-array fields parameter is ignored


def test_filter_on_modified_and_total(client: Client) -> None:
    everyone = profiles(client)
    boundary = sorted(p["modified"] for p in everyone)[100]
    newer = profiles(client, f"modified>={boundary}")
    assert newer
    assert all(p["modified"] >= boundary for p in newer)
    day = boundary[:10]
    assert len(profiles(client, f"modified>={day}")) >= len(newer)  # date-only works
    body = client.json("/database/1/profiles", {"fields[]": f"modified>={boundary}", "limit": 1})
    assert body["total"] == len(newer)


def test_modified_field_clash_on_legacy(client: Client) -> None:
    legacy = client.rows("/database/Legacy/profiles")
    assert {"modified", "email", "code_value"} == set(legacy[0]["fields"])
    future = client.rows("/database/Legacy/profiles", {"fields[]": "modified>=2999-01-01"})
    # The real field (words such as "manual") is compared, not the timestamp property.
    assert future
    assert all(p["fields"]["modified"] != "" for p in future)
    assert all(p["modified"] < "2999" for p in future)
    api = client.rows("/database/Legacy/profiles", {"fields[]": "MODIFIED==api"})
    assert {p["fields"]["modified"] for p in api} == {"api"}
    ordered = client.rows("/database/Legacy/profiles", {"orderby": "modified"})
    stamps = [p["modified"] for p in ordered]
    assert stamps == sorted(stamps)  # orderby=modified still uses the property


# --------------------------------------------------------------------------- order, dataonly
def test_orderby_and_order(client: Client, emu: Emulator) -> None:
    ascending = [p["modified"] for p in profiles(client, orderby="modified")]
    assert ascending == sorted(ascending)
    descending = [p["modified"] for p in profiles(client, orderby="modified", order="DESC")]
    assert descending == sorted(descending, reverse=True)
    by_age = [int(p["fields"]["age"]) for p in profiles(client, orderby="age")]
    assert by_age == sorted(by_age)
    age_field = next(f for f in client.rows("/database/1/fields") if f["name"] == "age")
    by_field_id = [int(p["fields"]["age"]) for p in profiles(client, orderby=age_field["ID"])]
    assert by_field_id == sorted(by_field_id)
    by_id_desc = [int(p["ID"]) for p in profiles(client, order="descending")]
    assert by_id_desc == sorted(by_id_desc, reverse=True)
    unknown = [int(p["ID"]) for p in profiles(client, orderby="nosuchfield", order="sideways")]
    assert unknown == sorted(unknown)
    shuffled = [int(p["ID"]) for p in profiles(client, orderby="random")]
    assert sorted(shuffled) == sorted(unknown)


def test_ties_come_in_arbitrary_order(client: Client) -> None:
    stamps = Counter(p["modified"] for p in profiles(client))
    assert stamps.most_common(1)[0][1] >= 5  # seed data has many shared seconds
    orders = {tuple(p["ID"] for p in profiles(client, orderby="modified")) for _ in range(4)}
    assert len(orders) > 1
    with Emulator(seed=42, profiles_per_database=200, shuffle_ties=False) as stable:
        rows = Client(stable).rows("/database/1/profiles", {"orderby": "modified"})
        keys = [(p["modified"], int(p["ID"])) for p in rows]
        assert keys == sorted(keys)


def test_dataonly(client: Client) -> None:
    row = client.rows("/database/1/profiles", {"dataonly": "true", "limit": 1})[0]
    assert set(row) == {"ID", "fields", "interests", "modified"}
    full = client.rows("/database/1/profiles", {"dataonly": "false", "limit": 1})[0]
    assert set(full) == {
        "ID",
        "fields",
        "interests",
        "database",
        "secret",
        "created",
        "modified",
        "removed",
    }
    sub = client.rows("/collection/Orders/subprofiles", {"dataonly": "yes", "limit": 1})[0]
    assert set(sub) == {"ID", "fields", "profile", "collection", "modified"}


def test_profile_and_subprofile_values_are_strings(client: Client) -> None:
    rows = client.rows("/database/1/profiles")
    for row in rows:
        assert row["removed"] is False
        assert all(isinstance(value, str) for value in row["fields"].values())
        assert set(row["interests"]) <= {"news", "offers", "events"}
    values = {name: {r["fields"][name] for r in rows} for name in rows[0]["fields"]}
    assert "0000-00-00" in values["birthdate"]
    assert "" in values["last_order_date"]
    assert "0000-00-00 00:00:00" in values["signup_at"]
    assert len(values["email"]) == len(rows)  # unique addresses
    subs = client.rows("/collection/Orders/subprofiles", {"fields[]": "quantity>5"})
    assert subs
    assert all(int(s["fields"]["quantity"]) > 5 for s in subs)
    assert set(subs[0]) == {
        "ID",
        "secret",
        "fields",
        "profile",
        "collection",
        "created",
        "modified",
        "removed",
    }


# --------------------------------------------------------------------------- id lists
def test_profileids_and_subprofileids(client: Client) -> None:
    ids = client.json("/database/1/profileids")
    assert ids == list(range(1, 201))
    assert client.json("/database/1/profileids", {"start": 10, "limit": 5}) == [11, 12, 13, 14, 15]
    assert len(client.json("/database/Newsletter/profileids", {"limit": 5000})) == 100
    subs = client.json("/collection/Orders/subprofileids", {"limit": 2, "start": 3})
    assert isinstance(subs, list)
    assert len(subs) > 2  # no paging parameters at all
    assert subs == sorted(subs)
    assert all(isinstance(i, int) for i in subs)


# --------------------------------------------------------------------------- removal, writes
def test_removed_profile_only_visible_by_id(fresh: Emulator) -> None:
    client = Client(fresh)
    store = fresh.store
    victim = store.profiles("Customers")[3]
    subs = [s for s in store.subprofiles("Orders") if s["profile"] == victim["ID"]]
    store.delete_profile(int(victim["ID"]))
    shown = client.json(f"/profile/{victim['ID']}")
    assert isinstance(shown["removed"], str)
    assert shown["removed"] == store.now() or shown["removed"] <= store.now()
    assert set(shown["fields"].values()) == {""}
    assert (shown["created"], shown["modified"], shown["secret"]) == (
        victim["created"],
        victim["modified"],
        victim["secret"],
    )
    assert victim["ID"] not in {p["ID"] for p in client.rows("/database/1/profiles")}
    assert int(victim["ID"]) not in client.json("/database/1/profileids")
    for sub in subs:
        assert isinstance(client.json(f"/subprofile/{sub['ID']}")["removed"], str)
        assert int(sub["ID"]) not in client.json("/collection/Orders/subprofileids")


def test_http_writes(fresh: Emulator) -> None:
    client = Client(fresh)
    url = fresh.api_url
    created = client.session.post(
        f"{url}/database/Customers/profiles",
        json={
            "fields": {"EMAIL": "new@example.com", "age": "41.9", "segment": "Gold"},
            "interests": ["news"],
        },
        timeout=TIMEOUT,
    )
    assert created.status_code == 201
    new_id = created.headers["X-Created"]
    assert created.headers["X-location"] == f"{url}/profile/{new_id}"
    profile = client.json(f"/profile/{new_id}")
    assert profile["fields"]["email"] == "new@example.com"
    assert profile["fields"]["age"] == "41"
    assert profile["fields"]["segment"] == ""  # select mismatch is stored empty
    assert profile["interests"] == ["news"]
    assert profile["created"] == profile["modified"]

    bad = client.session.post(f"{url}/database/1/profiles", json={"fields": "x"}, timeout=5)
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "Invalid data provided"

    form = client.session.post(
        f"{url}/database/1/profiles", data={"fields[firstname]": "Form"}, timeout=TIMEOUT
    )
    assert client.json(f"/profile/{form.headers['X-Created']}")["fields"]["firstname"] == "Form"

    fresh.store.advance(10)
    same = client.session.put(f"{url}/profile/{new_id}", json={"fields": {"age": 41.5}}, timeout=5)
    assert same.status_code == 204
    assert client.json(f"/profile/{new_id}")["modified"] == profile["modified"]
    changed = client.session.put(f"{url}/profile/{new_id}", json={"fields": {"age": 42}}, timeout=5)
    assert changed.status_code == 204
    after = client.json(f"/profile/{new_id}")
    assert after["fields"]["age"] == "42"
    assert after["modified"] > profile["modified"]

    fresh.store.advance(10)
    deleted = client.session.delete(f"{url}/profile/{new_id}", timeout=TIMEOUT)
    assert deleted.status_code == 204
    assert deleted.headers["X-deleted"] == f"profile {new_id}"
    assert client.json(f"/profile/{new_id}")["modified"] == after["modified"]
    again = client.session.delete(f"{url}/profile/{new_id}", timeout=TIMEOUT)
    assert again.status_code == 400
    assert again.json()["error"]["message"] == "This profile has already been removed"


def test_store_mutation_api(fresh: Emulator) -> None:
    store = fresh.store
    customers = store.database_id("customers")
    assert customers == 1
    orders = store.collection_id("Customers", "orders")
    profile_id = store.create_profile(customers, {"email": "a@b.c", "age": "abc"}, ["offers"])
    row = store.get_profile(profile_id)
    assert row["fields"]["age"] == "0"
    assert row["interests"] == ["offers"]
    store.advance(60)
    assert store.update_profile(profile_id, {"email": "a@b.c"}) is False
    assert store.update_profile(profile_id, {"city": "Delft"}) is True
    assert store.get_profile(profile_id)["modified"] > row["modified"]
    sub_id = store.create_subprofile(profile_id, orders, {"amount": "2.50", "ordered_at": "x"})
    sub = store.get_subprofile(sub_id)
    assert sub["fields"]["amount"] == "2.5"
    assert sub["fields"]["ordered_at"] == "0000-00-00 00:00:00"
    assert store.update_subprofile(sub_id, {"quantity": "3"}) is True
    field_id = store.add_field("database", customers, "vip", "integer", "5")
    assert field_id > 0
    assert {p["fields"]["vip"] for p in store.profiles(customers)} == {"0"}
    store.add_field("collection", orders, "shipped_on", "date")
    assert store.get_subprofile(sub_id)["fields"]["shipped_on"] == "0000-00-00"
    store.delete_subprofile(sub_id)
    assert sub_id not in [int(s["ID"]) for s in store.subprofiles(orders)]
    store.set_clock(-86400)
    assert store.now() < store.get_profile(profile_id)["modified"]


def test_seed_determinism() -> None:
    first = Emulator(seed=5, profiles_per_database=60)
    second = Emulator(seed=5, profiles_per_database=60)
    other = Emulator(seed=6, profiles_per_database=60)
    for name in ("Customers", "Newsletter", "Legacy"):
        assert first.store.profiles(name) == second.store.profiles(name)
    for name in ("Orders", "Tickets", "Notes"):
        assert first.store.subprofiles(name) == second.store.subprofiles(name)
    assert first.store.profiles("Customers") != other.store.profiles("Customers")
    assert len(first.store.profiles("Newsletter")) == 30
    assert len(first.store.profiles("Legacy")) == 15


# --------------------------------------------------------------------------- faults
@pytest.mark.parametrize(("kind", "status"), [("html503", 503), ("gateway504", 504)])
def test_loadbalancer_faults(fresh: Emulator, kind: str, status: int) -> None:
    client = Client(fresh)
    fresh.faults.add(kind, path=r"/profiles$", times=1)
    reply = client.get("/database/1/profiles")
    assert reply.status_code == status
    assert reply.headers["Content-Type"] == "text/html"
    assert "Loadbalancer Error" in reply.text
    assert "too many requests to handle" in reply.text
    assert client.get("/database/1/profiles").status_code == 200
    assert fresh.faults.injected == [(kind, "/v4/database/1/profiles")]


def test_ratelimit_fault(fresh: Emulator) -> None:
    client = Client(fresh)
    fresh.faults.add("ratelimit429", times=1)
    reply = client.get("/identity")
    assert reply.status_code == 429
    assert reply.headers["Retry-After"] == "1"
    assert "error" in reply.json()


def test_reset_and_truncate_faults(fresh: Emulator) -> None:
    client = Client(fresh)
    fresh.faults.add("reset", times=1)
    with pytest.raises(requests.ConnectionError):
        client.get("/database/1/profiles")
    assert fresh.requests[-1].status == 0
    fresh.faults.add("truncate", times=1)
    reply = client.get("/database/1/profiles")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        reply.json()
    assert client.get("/database/1/profiles").json()["count"] == 40


def test_expire_jwt_and_slow_faults(fresh: Emulator) -> None:
    client = Client(fresh)
    fresh.faults.add("expire_jwt", times=1)
    assert client.get("/identity").status_code == 401
    assert client.get("/identity").status_code == 200
    fresh.faults.add("slow", times=1)
    with pytest.raises(requests.Timeout):
        client.get("/identity", timeout=0.3)


def test_fault_rate_after_times_and_auth_outage(fresh: Emulator) -> None:
    client = Client(fresh)
    fresh.faults.add("html503", path="identity", after=2, times=2)
    statuses = [client.get("/identity").status_code for _ in range(6)]
    assert statuses == [200, 200, 503, 503, 200, 200]
    fresh.faults.clear()
    fresh.faults.add("html503", path="identity", rate=0.5, seed=3)
    statuses = [client.get("/identity").status_code for _ in range(20)]
    assert 0 < statuses.count(503) < 20
    fresh.faults.clear()
    fresh.faults.add("html503")  # default: /v4 only, never the auth service
    assert requests.post(fresh.auth_url, data={"access_token": fresh.api_token}).ok
    fresh.faults.clear()
    fresh.faults.add("html503", path="^/authenticate", times=1)
    assert requests.post(fresh.auth_url, data={"access_token": fresh.api_token}).status_code == 503
    fresh.faults.auth_down_until = time.time() + 30
    down = requests.post(fresh.auth_url, data={"access_token": fresh.api_token}, timeout=5)
    assert down.status_code == 503
    assert down.headers["Content-Type"] == "text/html"
    fresh.faults.clear()
    fresh.faults.latency_ms = 50
    started = time.monotonic()
    client.get("/identity")
    assert time.monotonic() - started >= 0.05


# --------------------------------------------------------------------------- log and hooks
def test_request_log(fresh: Emulator) -> None:
    client = Client(fresh)
    client.get("/database/1/profiles", {"limit": 2, "fields[]": ["id>3", "id<9"]})
    log = fresh.requests[-1]
    assert isinstance(log, RequestLog)
    assert (log.method, log.path, log.status, log.authorized) == (
        "GET",
        "/v4/database/1/profiles",
        200,
        True,
    )
    assert log.query == {"limit": ["2"], "fields[]": ["id>3", "id<9"]}
    assert abs(log.at - time.time()) < 5
    auth = [entry for entry in fresh.requests if entry.path == "/authenticate"]
    assert auth[0].status == 200


def test_on_response_hook_mutates_between_pages(fresh: Emulator) -> None:
    client = Client(fresh)
    calls: list[RequestLog] = []
    page_requests = 0

    def after_page(log: RequestLog) -> None:
        nonlocal page_requests
        calls.append(log)
        if log.path.endswith("/profiles") and log.method == "GET":
            page_requests += 1
            if page_requests == 3:
                fresh.store.delete_profile(1)

    fresh.on_response(after_page)
    ids: list[str] = []
    for start in range(0, 40, 10):
        ids += [
            p["ID"]
            for p in client.json("/database/1/profiles", {"start": start, "limit": 10})["data"]
        ]
    assert calls[-1].status == 200
    assert len(ids) == 39  # deleting a row before the offset shifts the rest: one is skipped
    assert "31" not in ids
    assert fresh.hook_errors == []


def test_cli_prints_urls_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "copernica_emulator",
            "--port",
            "0",
            "--profiles",
            "8",
            "--seed",
            "3",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().split() for _ in range(3)]
        info = dict(lines)
        assert info["api_url"].endswith("/v4")
        assert info["auth_url"].endswith("/authenticate")
        assert info["api_token"] == "emulator-api-token-3"
        reply = requests.post(info["auth_url"], data={"access_token": info["api_token"]}, timeout=5)
        assert reply.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
