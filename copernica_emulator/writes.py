"""POST / PUT / DELETE handlers for profiles and subprofiles (`rest-post-database-profiles.md`,
`rest-put-database-profiles.md`, `rest-put-profile-subprofiles.md` and their neighbours)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .bodies import parse_body
from .context import ApiContext, ApiRequest
from .filters import parse_conditions
from .messages import Response, empty_response
from .model import ApiError, Database, Profile, Subprofile
from .params import filter_expressions, is_true, last
from .store import InterestInput, OwnerKind


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


#: How write answers look: "v4" as the v4 docs say (201 + X-location/X-Created, 204,
#: 204 + X-deleted) or "v2" as observed live (303 + Location for every PUT, X-Created for new
#: IDs, 200 + X-deleted). Tests switch with ``store.extensions["write_style"] = "v2"``.
WRITE_STYLES = ("v4", "v2")


def _style(ctx: ApiContext) -> str:
    return str(ctx.store.extensions.get("write_style", "v4"))


def _created(ctx: ApiContext, profile_id: int, kind: str = "profile") -> Response:
    location = f"{ctx.api_url}/{kind}/{profile_id}"
    if _style(ctx) == "v2":
        return empty_response(303, (("Location", location), ("X-Created", str(profile_id))))
    return empty_response(201, (("X-location", location), ("X-Created", str(profile_id))))


def _updated(ctx: ApiContext, req: ApiRequest) -> Response:
    if _style(ctx) == "v2":
        return empty_response(303, (("Location", "/" + "/".join(req.segments)),))
    return empty_response(204)


def _deleted(ctx: ApiContext, kind: str, row_id: int) -> Response:
    status = 200 if _style(ctx) == "v2" else 204
    return empty_response(status, (("X-deleted", f"{kind} {row_id}"),))


def _profile_body(req: ApiRequest) -> tuple[dict[str, Any], dict[str, Any] | None]:
    body = parse_body(req.content_type, req.body)
    wrapper = body if isinstance(body, dict) else {}
    return wrapper, _object(wrapper.get("fields", {}))


def _refuse_blocked(ctx: ApiContext, fields: dict[str, Any]) -> None:
    """Some addresses are refused on create (Copernica answers "Failed to create profile" for
    an address at a domain it knows for spam bots); tests list
    domains in ``store.extensions["refused_domains"]``."""
    blocked = ctx.store.extensions.get("refused_domains", ())
    for value in fields.values():
        if isinstance(value, str) and any(value.lower().endswith(d) for d in blocked):
            raise ApiError("Failed to create profile")


def create_profile(req: ApiRequest, ctx: ApiContext, database: Database) -> Response:
    body, fields = _profile_body(req)
    if fields is None:
        raise ApiError("Invalid data provided")
    _refuse_blocked(ctx, fields)
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
        _refuse_blocked(ctx, fields)
        return _created(ctx, ctx.store.create_profile(database.id, fields, interests or ()))
    return _updated(ctx, req)


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
    return _updated(ctx, req)


def delete_profile(ctx: ApiContext, profile: Profile) -> Response:
    ctx.store.delete_profile(profile.id)
    return _deleted(ctx, "profile", profile.id)


def create_subprofile(
    req: ApiRequest, ctx: ApiContext, profile: Profile, collection_ref: str
) -> Response:
    """Subprofiles take a flat body; a ``fields`` wrapper is just an unknown field name."""
    body = parse_body(req.content_type, req.body)
    fields = body if isinstance(body, dict) else {}
    subprofile_id = ctx.store.create_subprofile(profile.id, collection_ref, fields)
    return _created(ctx, subprofile_id, "subprofile")


def upsert_subprofiles(
    req: ApiRequest, ctx: ApiContext, profile: Profile, collection_ref: str
) -> Response:
    """Update the profile's subprofiles matching the selector; create one with create=1.

    For database profiles an expression that does not parse or names an unknown field is
    dropped from the selector; here it is an error ("Invalid fields parameter"). The answer to
    a create carries no X-Created (as observed), only the location.
    """
    expressions = filter_expressions(req.query)
    if not expressions:
        raise ApiError("URL parameter fields is required")
    try:
        collection = ctx.store.collection(collection_ref)
    except ApiError:
        raise ApiError("Subprofile could not be created") from None
    conditions = parse_conditions(expressions, collection.fields)
    if len(conditions) != len(expressions):
        raise ApiError("Invalid fields parameter")
    body = parse_body(req.content_type, req.body)
    fields = body if isinstance(body, dict) else {}
    matches = [
        ctx.store.subprofile_rows[i]
        for i in profile.subprofile_ids
        if ctx.store.subprofile_rows[i].removed is None
        and ctx.store.subprofile_rows[i].collection_id == collection.id
        and all(condition.test(ctx.store.subprofile_rows[i]) for condition in conditions)
    ]
    for row in matches:
        ctx.store.update_subprofile(row.id, fields)
    if not matches and is_true(last(req.query, "create") or ""):
        new_id = ctx.store.create_subprofile(profile.id, collection.id, fields)
        location = f"{ctx.api_url}/subprofile/{new_id}"
        if _style(ctx) == "v2":
            return empty_response(303, (("Location", location),))
        return empty_response(201, (("X-location", location),))
    return _updated(ctx, req)


def create_structure(
    req: ApiRequest, ctx: ApiContext, kind: OwnerKind, owner_id: int, part: str
) -> Response:
    """``POST database/{id}/fields|interests``, ``POST collection/{id}/fields``."""
    body = parse_body(req.content_type, req.body)
    wrapper = body if isinstance(body, dict) else {}
    name = str(wrapper.get("name", "")).strip()
    if not name:
        raise ApiError("Invalid data provided")
    if part == "interests":
        new_id = ctx.store.add_interest(owner_id, name, str(wrapper.get("group", "")))
    else:
        try:
            new_id = ctx.store.add_field(
                kind,
                owner_id,
                name,
                str(wrapper.get("type", "text")),
                str(wrapper.get("value", "")),
            )
        except ValueError as error:
            raise ApiError(str(error)) from None
    return empty_response(201, (("X-Created", str(new_id)),))


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
    return _updated(ctx, req)


def delete_subprofile(ctx: ApiContext, subprofile: Subprofile) -> Response:
    ctx.store.delete_subprofile(subprofile.id)
    return _deleted(ctx, "subprofile", subprofile.id)
