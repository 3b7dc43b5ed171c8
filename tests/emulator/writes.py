"""POST / PUT / DELETE handlers for profiles and subprofiles (contract f.1, f.2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .bodies import parse_body
from .context import ApiContext, ApiRequest
from .filters import parse_conditions
from .messages import Response, empty_response
from .model import ApiError, Database, Profile, Subprofile
from .params import filter_expressions, is_true, last
from .store import InterestInput


def _object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if value == []:
        return {}  # an empty JSON array is how PHP clients send an empty object
    return None


def _interests(body: Mapping[str, Any]) -> InterestInput | None:
    value = body.get("interests")
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return [str(item) for item in value]
    return None


def _created(ctx: ApiContext, profile_id: int) -> Response:
    return empty_response(
        201,
        (("X-location", f"{ctx.api_url}/profile/{profile_id}"), ("X-Created", str(profile_id))),
    )


def _profile_body(req: ApiRequest) -> tuple[dict[str, Any], dict[str, Any] | None]:
    body = parse_body(req.content_type, req.body)
    wrapper = body if isinstance(body, dict) else {}
    return wrapper, _object(wrapper.get("fields", {}))


def create_profile(req: ApiRequest, ctx: ApiContext, database: Database) -> Response:
    body, fields = _profile_body(req)
    if fields is None:
        raise ApiError("Invalid data provided")
    profile_id = ctx.store.create_profile(database.id, fields, _interests(body) or ())
    return _created(ctx, profile_id)


def upsert_profiles(req: ApiRequest, ctx: ApiContext, database: Database) -> Response:
    """Update every live match of the selector; create one when none match and create=1."""
    expressions = filter_expressions(req.query)
    if not expressions:
        raise ApiError("URL parameter fields is required")
    body, fields = _profile_body(req)
    if fields is None:
        raise ApiError("Invalid data provided")
    conditions = parse_conditions(expressions, database.fields)
    matches = [
        row
        for row in ctx.store.live_profiles(database.id)
        if all(condition.test(row) for condition in conditions)
    ]
    interests = _interests(body)
    for row in matches:
        ctx.store.update_profile(row.id, fields, interests=interests)
    if not matches and is_true(last(req.query, "create") or ""):
        return _created(ctx, ctx.store.create_profile(database.id, fields, interests or ()))
    return empty_response(204)


def update_profile(req: ApiRequest, ctx: ApiContext, profile: Profile, *, flat: bool) -> Response:
    body = parse_body(req.content_type, req.body)
    wrapper = body if isinstance(body, dict) else {}
    fields = wrapper if flat else (_object(wrapper.get("fields", {})) or {})
    secret = None if flat else wrapper.get("secret")
    ctx.store.update_profile(
        profile.id,
        fields,
        interests=None if flat else _interests(wrapper),
        secret=str(secret) if isinstance(secret, (str, int)) else None,
    )
    return empty_response(204)


def delete_profile(ctx: ApiContext, profile: Profile) -> Response:
    ctx.store.delete_profile(profile.id)
    return empty_response(204, (("X-deleted", f"profile {profile.id}"),))


def create_subprofile(
    req: ApiRequest, ctx: ApiContext, profile: Profile, collection_ref: str
) -> Response:
    """Subprofiles take a flat body; a ``fields`` wrapper is just an unknown field name."""
    body = parse_body(req.content_type, req.body)
    fields = body if isinstance(body, dict) else {}
    subprofile_id = ctx.store.create_subprofile(profile.id, collection_ref, fields)
    return empty_response(
        201,
        (
            ("X-location", f"{ctx.api_url}/subprofile/{subprofile_id}"),
            ("X-Created", str(subprofile_id)),
        ),
    )


def update_subprofile(
    req: ApiRequest, ctx: ApiContext, subprofile: Subprofile, *, flat: bool
) -> Response:
    body = parse_body(req.content_type, req.body)
    wrapper = body if isinstance(body, dict) else {}
    fields = wrapper if flat else (_object(wrapper.get("fields", {})) or {})
    secret = None if flat else wrapper.get("secret")
    ctx.store.update_subprofile(
        subprofile.id, fields, secret=str(secret) if isinstance(secret, (str, int)) else None
    )
    return empty_response(204)


def delete_subprofile(ctx: ApiContext, subprofile: Subprofile) -> Response:
    ctx.store.delete_subprofile(subprofile.id)
    return empty_response(204, (("X-deleted", f"subprofile {subprofile.id}"),))
