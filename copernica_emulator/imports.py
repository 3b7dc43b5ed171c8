"""Bulk imports: ``POST /imports`` and ``GET /import/{id}`` (`rest-post-imports.md`,
`rest-get-import.md`).

An import is accepted at once (201 + the new ID) and processed in the background, a few rows
at a time, so a client sees ``processedlines`` grow until it equals ``totallines``. Every
source row must list its keys in the same order: an import whose rows differ fails with
``lasterror`` set and nothing written. Tests can make the next import fail part-way through.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .bodies import parse_body
from .context import ApiContext, ApiRequest
from .filters import parse_conditions
from .messages import Response, empty_response, json_response
from .model import ApiError, Database
from .params import truthy
from .store import Store

ACTIONS = ("add", "update", "update or add", "ignore or add", "delete")
ROWS_PER_STEP = 25
STEP_SECONDS = 0.005
KEY_ORDER_ERROR = "Not all rows have the same fields in the same order"


@dataclass
class ImportJob:
    id: int
    name: str
    database_id: int
    action: str
    key_fields: list[str]
    rows: list[dict[str, Any]]
    status: str = "ready for start"
    processed: int = 0
    lasterror: str = ""
    lastrun: str | bool = False


@dataclass
class ImportRegistry:
    """The imports of one emulated account, and the failure a test wants injected."""

    jobs: dict[int, ImportJob] = field(default_factory=dict)
    #: Make the next import(s) stop after this many rows with ``fail_message``.
    fail_after: int | None = None
    fail_times: int = 0
    fail_message: str = "Import aborted: internal error"
    #: Seconds between steps of `ROWS_PER_STEP` rows: raise it for an import that is still
    #: running when a client stops waiting (a real account's large imports take minutes).
    step_seconds: float = STEP_SECONDS
    posted: list[dict[str, Any]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def wait(self, timeout: float = 10.0) -> None:
        """Wait until every background import has finished (for tests)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))


def registry(store: Store) -> ImportRegistry:
    """The import registry kept with ``store``."""
    with store.lock:
        found = store.extensions.get("imports")
        if not isinstance(found, ImportRegistry):
            found = ImportRegistry()
            store.extensions["imports"] = found
        return found


def _source_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    source = body.get("source")
    if isinstance(source, str):
        if str(body.get("format", "json")).lower() != "json":
            raise ApiError("Only JSON sources are supported by this emulator")
        try:
            source = json.loads(source)
        except ValueError:
            raise ApiError("Invalid source") from None
    if not isinstance(source, list) or not all(isinstance(row, dict) for row in source):
        raise ApiError("Invalid source")
    return source


def post_import(req: ApiRequest, ctx: ApiContext) -> Response:
    body = parse_body(req.content_type, req.body)
    if not isinstance(body, dict):
        raise ApiError("Invalid data provided")
    database = ctx.store.database(str(body.get("database", "")))
    action = str(body.get("action", "add")).lower()
    if action not in ACTIONS:
        raise ApiError(f"Invalid action {action}")
    keys = body.get("keyFields") or []
    if not isinstance(keys, list):
        raise ApiError("keyFields must be an array")
    if action != "add" and not keys:
        raise ApiError("An update import needs key fields")
    rows = _source_rows(body)
    imports = registry(ctx.store)
    job_id = ctx.store._next_id("import")
    job = ImportJob(job_id, str(body.get("name", "")), database.id, action, list(keys), rows)
    imports.jobs[job_id] = job
    imports.posted.append(body)
    fail_after: int | None = None
    if imports.fail_after is not None and imports.fail_times > 0:
        imports.fail_times -= 1
        fail_after = imports.fail_after
    if truthy(body.get("autostart", True)):
        thread = threading.Thread(
            target=_run,
            args=(ctx.store, job, fail_after, imports.fail_message, imports.step_seconds),
            daemon=True,
        )
        imports._threads.append(thread)
        thread.start()
    return empty_response(
        201,
        (("X-location", f"{ctx.api_url}/import/{job_id}"), ("X-Created", str(job_id))),
    )


def get_import(ctx: ApiContext, ref: str) -> Response:
    job = registry(ctx.store).jobs.get(int(ref)) if ref.isdigit() else None
    if job is None:
        raise ApiError("No import with supplied ID")
    return json_response(
        {
            "ID": str(job.id),
            "name": job.name,
            "type": job.action,
            "status": job.status,
            "totallines": str(len(job.rows)),
            "processedlines": str(job.processed),
            "lastrun": job.lastrun,
            "nextrun": False,
            "lasterror": job.lasterror or False,
        }
    )


def _run(
    store: Store, job: ImportJob, fail_after: int | None, fail_message: str, step_seconds: float
) -> None:
    with store.lock:
        job.status = "running"
        job.lastrun = store.now()
        first = list(job.rows[0]) if job.rows else []
        if any(list(row) != first for row in job.rows):
            job.status = "finished"
            job.lasterror = KEY_ORDER_ERROR
            return
        database = store.databases[job.database_id]
    for start in range(0, len(job.rows), ROWS_PER_STEP):
        time.sleep(step_seconds)
        with store.lock:
            for row in job.rows[start : start + ROWS_PER_STEP]:
                if fail_after is not None and job.processed >= fail_after:
                    job.status = "finished"
                    job.lasterror = fail_message
                    return
                _apply(store, database, job, row)
                job.processed += 1
    with store.lock:
        job.status = "finished"


def _apply(store: Store, database: Database, job: ImportJob, row: dict[str, Any]) -> None:
    expressions = [f"{name}=={_text(row.get(name))}" for name in job.key_fields]
    conditions = parse_conditions(expressions, database.fields)
    matches = (
        [
            profile
            for profile in store.live_profiles(database.id)
            if all(condition.test(profile) for condition in conditions)
        ]
        if conditions
        else []
    )
    if job.action == "add" or (not matches and job.action in ("update or add", "ignore or add")):
        store.create_profile(database.id, row)
    elif job.action in ("update", "update or add"):
        for profile in matches:
            store.update_profile(profile.id, row)
    elif job.action == "delete":
        for profile in matches:
            store.delete_profile(profile.id)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    return str(value)
