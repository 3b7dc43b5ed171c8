"""Turn model objects into the JSON shapes the REST v4 API returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .model import Collection, Database, FieldDef, Interest, Profile, Subprofile

JSON = dict[str, Any]

# Lists embedded in an entity (a database's fields, interests and collections, a collection's
# fields) come in the same {start, limit, count, total, data} wrapper as a paged list, always
# from 0 and cut at these sizes: a client must fetch the full list from its own endpoint.
EMBEDDED_FIELDS_LIMIT = 1000
EMBEDDED_INTERESTS_LIMIT = 1000
EMBEDDED_COLLECTIONS_LIMIT = 100
EMBEDDED_COLLECTION_FIELDS_LIMIT = 100


def embedded(items: Sequence[JSON], limit: int) -> JSON:
    """An embedded list wrapper, always starting at 0."""
    data = list(items[:limit])
    return {"start": 0, "limit": limit, "count": len(data), "total": len(items), "data": data}


def field_json(field: FieldDef) -> JSON:
    return {
        "ID": str(field.id),
        "name": field.name,
        "type": field.type,
        "value": field.value,
        "displayed": field.displayed,
        "ordered": field.ordered,
        "length": str(field.length),
        "textlines": str(field.textlines),
        "hidden": field.hidden,
        "index": field.index,
    }


def interest_json(interest: Interest) -> JSON:
    return {"ID": str(interest.id), "name": interest.name, "group": interest.group}


def collection_json(collection: Collection) -> JSON:
    fields = [field_json(f) for f in collection.fields]
    return {
        "ID": str(collection.id),
        "name": collection.name,
        "database": str(collection.database_id),
        "fields": embedded(fields, EMBEDDED_COLLECTION_FIELDS_LIMIT),
    }


def database_json(database: Database, collections: Sequence[Collection]) -> JSON:
    return {
        "ID": str(database.id),
        "name": database.name,
        "description": database.description,
        "archived": database.archived,
        "created": database.created,
        "fields": embedded([field_json(f) for f in database.fields], EMBEDDED_FIELDS_LIMIT),
        "interests": embedded(
            [interest_json(i) for i in database.interests], EMBEDDED_INTERESTS_LIMIT
        ),
        "collections": embedded(
            [collection_json(c) for c in collections], EMBEDDED_COLLECTIONS_LIMIT
        ),
    }


def _values(fields: Sequence[FieldDef], values: dict[str, str]) -> dict[str, str]:
    return {f.name: values.get(f.name, "") for f in fields}


def profile_json(profile: Profile, database: Database, *, dataonly: bool = False) -> JSON:
    chosen = set(profile.interests)
    interests = [i.name for i in database.interests if i.name in chosen]
    fields = _values(database.fields, profile.fields)
    if dataonly:
        return {
            "ID": str(profile.id),
            "fields": fields,
            "interests": interests,
            "modified": profile.modified,
        }
    return {
        "ID": str(profile.id),
        "fields": fields,
        "interests": interests,
        "database": str(profile.database_id),
        "secret": profile.secret,
        "created": profile.created,
        "modified": profile.modified,
        "removed": profile.removed if profile.removed is not None else False,
    }


def subprofile_json(
    subprofile: Subprofile, collection: Collection, *, dataonly: bool = False
) -> JSON:
    fields = _values(collection.fields, subprofile.fields)
    if dataonly:
        return {
            "ID": str(subprofile.id),
            "fields": fields,
            "profile": str(subprofile.profile_id),
            "collection": str(subprofile.collection_id),
            "modified": subprofile.modified,
        }
    return {
        "ID": str(subprofile.id),
        "secret": subprofile.secret,
        "fields": fields,
        "profile": str(subprofile.profile_id),
        "collection": str(subprofile.collection_id),
        "created": subprofile.created,
        "modified": subprofile.modified,
        "removed": subprofile.removed if subprofile.removed is not None else False,
    }
