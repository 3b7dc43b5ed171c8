"""Routing of /v4 requests and the read (GET) endpoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from . import imports, mailings, structure, writes
from .context import ApiContext, ApiRequest
from .filters import Row, parse_conditions
from .messages import INVALID_METHOD, Response, error_response, json_response
from .model import ApiError, Collection, Database, FieldDef, Profile, Subprofile
from .ordering import order_rows
from .paging import page_from, wrapped
from .params import filter_expressions, is_true, last
from .render import (
    collection_json,
    database_json,
    field_json,
    interest_json,
    profile_json,
    subprofile_json,
)

IDENTITY = {
    "ID": "1",
    "name": "emulator",
    "description": "Copernica REST v4 emulator account",
    "company": "Emulator B.V.",
}
R = TypeVar("R", bound=Row)


def missing_element(position: int) -> ApiError:
    return ApiError(f"Invalid request, element {position} is missing in 'directory' path")


def dispatch(req: ApiRequest, ctx: ApiContext) -> Response:
    """Answer one authorised /v4 request; the store stays locked while the answer is built."""
    try:
        with ctx.store.lock:
            return _route(req, ctx)
    except ApiError as error:
        return error_response(error.message)


def _route(req: ApiRequest, ctx: ApiContext) -> Response:
    if not req.segments:
        raise ApiError(INVALID_METHOD)
    head, tail = req.segments[0], req.segments[1:]
    if head in ("database", "collection", "profile", "subprofile") and not tail:
        raise missing_element(1)
    store = ctx.store
    selections = structure.route(req, ctx)  # views, rules, miniviews, webhooks, consumption
    if selections is not None:
        return selections
    if head == "identity" and req.method == "GET":
        return json_response(IDENTITY)
    if head == "databases" and req.method == "GET":
        databases = list(store.databases.values())
        return _list(databases, req, lambda d: database_json(d, store.collections_of(d)))
    if head == "imports" and req.method == "POST":
        return imports.post_import(req, ctx)
    if head == "import" and tail and req.method == "GET":
        return imports.get_import(ctx, tail[0])
    if head in mailings.PRODUCTS:
        return mailings.route(req, ctx)
    # An unknown ID is reported before anything else about the path is checked.
    if head == "database":
        return _database(req, ctx, store.database(tail[0]), tail[1:])
    if head == "collection":
        return _collection(req, ctx, store.collection(tail[0]), tail[1:])
    if head == "profile":
        return _profile(req, ctx, store.profile(tail[0]), tail[1:])
    if head == "subprofile":
        return _subprofile(req, ctx, store.subprofile(tail[0]), tail[1:])
    raise ApiError(INVALID_METHOD)


def _list(rows: Sequence[Any], req: ApiRequest, render: Callable[[Any], Any]) -> Response:
    return json_response(wrapped(rows, page_from(req.query), render))


def _select(rows: Sequence[R], req: ApiRequest, ctx: ApiContext, fields: list[FieldDef]) -> list[R]:
    """Filter, then order (paging is applied by the caller)."""
    conditions = parse_conditions(filter_expressions(req.query), fields)
    matching = [row for row in rows if all(c.test(row) for c in conditions)]
    return order_rows(
        matching,
        last(req.query, "orderby"),
        last(req.query, "order"),
        fields,
        ctx.rng,
        shuffle_ties=ctx.shuffle_ties,
    )


def _dataonly(req: ApiRequest) -> bool:
    return is_true(last(req.query, "dataonly") or "")


def _database(req: ApiRequest, ctx: ApiContext, db: Database, tail: list[str]) -> Response:
    store = ctx.store
    part = tail[0] if tail else None
    if req.method == "GET":
        if part is None:
            return json_response(database_json(db, store.collections_of(db)))
        if part == "fields":
            return _list(db.fields, req, field_json)
        if part == "interests":
            return _list(db.interests, req, interest_json)
        if part == "collections":
            return _list(store.collections_of(db), req, collection_json)
        if part == "profiles":
            rows = _select(store.live_profiles(db.id), req, ctx, db.fields)
            dataonly = _dataonly(req)
            return _list(rows, req, lambda p: profile_json(p, db, dataonly=dataonly))
        if part == "profileids":
            page = page_from(req.query, default_limit=1000, max_limit=1000)
            return json_response(page.slice(db.live_ids))
    if req.method == "POST" and part == "profiles":
        return writes.create_profile(req, ctx, db)
    if req.method == "PUT" and part == "profiles":
        return writes.upsert_profiles(req, ctx, db)
    if req.method == "POST" and part in ("fields", "interests"):
        return writes.create_structure(req, ctx, "database", db.id, part)
    raise ApiError(INVALID_METHOD)


def _collection(req: ApiRequest, ctx: ApiContext, col: Collection, tail: list[str]) -> Response:
    part = tail[0] if tail else None
    if req.method == "GET":
        if part is None:
            return json_response(collection_json(col))
        if part == "fields":
            return _list(col.fields, req, field_json)
        if part == "subprofiles":
            rows = _select(ctx.store.live_subprofiles(col.id), req, ctx, col.fields)
            dataonly = _dataonly(req)
            return _list(rows, req, lambda s: subprofile_json(s, col, dataonly=dataonly))
        if part == "subprofileids":
            return json_response(list(col.live_ids))  # documented without any parameters
    if req.method == "POST" and part == "fields":
        return writes.create_structure(req, ctx, "collection", col.id, part)
    raise ApiError(INVALID_METHOD)


def _profile(req: ApiRequest, ctx: ApiContext, profile: Profile, tail: list[str]) -> Response:
    store = ctx.store
    db = store.databases[profile.database_id]
    method = req.method
    if method == "DELETE":
        return writes.delete_profile(ctx, profile)  # extra segments do not matter here
    if method == "GET" and not tail:
        return json_response(profile_json(profile, db))
    if method == "GET" and tail == ["fields"]:
        return json_response(profile_json(profile, db)["fields"])
    if method == "GET" and tail == ["interests"]:
        return json_response(profile_json(profile, db)["interests"])
    if method in ("PUT", "POST") and not tail:
        return writes.update_profile(req, ctx, profile, flat=False)
    if method in ("PUT", "POST") and tail == ["fields"]:
        return writes.update_profile(req, ctx, profile, flat=True)
    if tail and tail[0] == "subprofiles" and method in ("GET", "POST", "PUT"):
        if len(tail) < 2:
            raise missing_element(3)
        if method == "PUT":
            return writes.upsert_subprofiles(req, ctx, profile, tail[1])
        if method == "POST":
            return writes.create_subprofile(req, ctx, profile, tail[1])
        col = store.collection(tail[1])
        rows = [
            store.subprofile_rows[i]
            for i in profile.subprofile_ids
            if store.subprofile_rows[i].removed is None
            and store.subprofile_rows[i].collection_id == col.id
        ]
        rows = _select(rows, req, ctx, col.fields)  # the `fields` filter works here too
        return _list(rows, req, lambda s: subprofile_json(s, col))
    raise ApiError(INVALID_METHOD)


def _subprofile(req: ApiRequest, ctx: ApiContext, sub: Subprofile, tail: list[str]) -> Response:
    col = ctx.store.collections[sub.collection_id]
    method = req.method
    if method == "DELETE":
        return writes.delete_subprofile(ctx, sub)
    if method == "GET" and not tail:
        return json_response(subprofile_json(sub, col))
    if method == "GET" and tail == ["fields"]:
        return json_response(subprofile_json(sub, col)["fields"])
    if method in ("PUT", "POST") and not tail:
        return writes.update_subprofile(req, ctx, sub, flat=False)
    if method in ("PUT", "POST") and tail == ["fields"]:
        return writes.update_subprofile(req, ctx, sub, flat=True)
    raise ApiError(INVALID_METHOD)
