"""The API write path: one request per record, up to `max_parallel_requests` in flight.

Records with the same key (and parent) form a group that is written one after another in
input order, so the last one wins as in the source; different groups run in parallel.

Profiles:
- upsert: `PUT database/{id}/profiles?fields[]=<key>==<value>&create=1` (the documented
  selector update); the key fields are in the body too, since the selector is not copied;
- update-only: the same without `create`, only for keys that exist;
- append-only: `POST database/{id}/profiles`; when a try fails in a way that may have
  reached the API, the key is looked up before the next try so a lost answer never turns
  into a duplicate; each insert is noted in the insert journal (`journal.py`) so a rerun
  after a crash does not repeat it;
- deletes (`hard_delete`): `DELETE profile/{id}` for each profile with the key.
Subprofiles go the same way under their parent profile, found by its key.
Every documented and observed success is accepted: 201/204 with or without X-location /
X-Created, 303 with Location, 200 with X-deleted.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from copernica_api.errors import CopernicaAPIError
from copernica_api.http import RetryStopped
from target_copernica.destination import find_profiles, find_subprofiles, selector
from target_copernica.journal import Lookup
from target_copernica.records import Item, Rejected, fingerprint_of
from target_copernica.settings import INSERT, UPDATE_ONLY, UPSERT
from target_copernica.stream_write import StreamWrite, created_id

logger = logging.getLogger("target_copernica.api_writer")
ALREADY_REMOVED = (
    "this profile has already been removed",
    "this subprofile has already been removed",
)
MAX_MULTI_MATCH_WARNINGS = 5


class ApiWriter:
    """Writes items of one stream through per-record API calls."""

    def __init__(
        self, write: StreamWrite, *, hard_delete: bool, dry_run: bool, max_parallel: int
    ) -> None:
        self.job = write  # what to write where, and where to report it
        self.hard_delete = hard_delete
        self.dry_run = dry_run
        self.max_parallel = max_parallel

    # -- scheduling --------------------------------------------------------------------
    def write(self, items: list[Item]) -> None:
        """Write all items; returns when every one is written or rejected."""
        groups: dict[Any, list[Item]] = {}
        for item in items:
            groups.setdefault(item.group, []).append(item)
        if self.max_parallel <= 1 or len(groups) <= 1:
            for group in groups.values():
                self._write_group(group)
            return
        with ThreadPoolExecutor(self.max_parallel, thread_name_prefix="copernica-write") as pool:
            # list(): re-raises the first failure that is not about one record.
            list(pool.map(self._write_group, groups.values()))

    def _write_group(self, items: list[Item]) -> None:
        for item in items:
            try:
                if self.job.destination.is_collection:
                    self._subprofile(item)
                else:
                    self._profile(item)
            except Rejected as exc:
                self.job.reject(item, exc.reason)
            except CopernicaAPIError as exc:
                self.job.reject(item, str(exc))

    # -- profiles ----------------------------------------------------------------------
    @property
    def _db(self) -> str:
        return self.job.destination.structure.id

    def _body(self, item: Item) -> dict[str, Any]:
        body: dict[str, Any] = {"fields": item.fields}
        if item.interests is not None:
            body["interests"] = item.interests
        return body

    def _note_matches(self, item: Item, count: int) -> None:
        if count > 1:
            self.job.summary.add("multiple_matches")
            if self.job.summary["multiple_matches"] <= MAX_MULTI_MATCH_WARNINGS:
                logger.warning(
                    "Stream '%s': %d profiles have the key %s; Copernica updates all of them.",
                    self.job.summary.stream,
                    count,
                    item.key_values,
                )

    def _profile(self, item: Item) -> None:
        if item.delete:
            self._delete_profiles(item)
        elif self.job.load_method == INSERT:
            self._insert_profile(item)
        else:
            self._update_profiles(item, create=self.job.load_method == UPSERT)

    def _update_profiles(self, item: Item, *, create: bool) -> None:
        index = self.job.destination.index
        count = index.count(item.key)
        if count == 0 and not create:
            self.job.summary.add("not_found")
            return
        self._note_matches(item, count)
        if self.dry_run:
            self.job.summary.add("updated" if count else "inserted")
            if not count:
                index.add(item.key, 0)
            return
        params = selector(self.job.destination.key_fields, item.key_values)
        if create:
            params.append(("create", "1"))
        response = self.job.session.request(
            "PUT", f"database/{self._db}/profiles", params=params, body=self._body(item)
        )
        created, new_id = created_id(response, "profile")
        # A bare 200 (an answer whose headers were lost) says nothing: trust the index.
        created = created or (count == 0 and response.status_code == 200)
        if created:
            self.job.summary.add("inserted")
            index.add(item.key, new_id)
        else:
            self.job.summary.add("updated")
            if count == 0:
                index.add(item.key, 0)

    def _insert_profile(self, item: Item) -> None:
        index = self.job.destination.index
        if self.dry_run:
            self.job.summary.add("inserted")
            return
        conditions = selector(self.job.destination.key_fields, item.key_values)
        known = index.ids(item.key)
        # How many profiles have this key now: a retry is skipped once there is one more.
        before = (
            len(find_profiles(self.job.session, self._db, conditions)) if 0 in known else len(known)
        )
        landed: list[int] = []

        def not_landed(exc: BaseException) -> bool:
            found = find_profiles(self.job.session, self._db, conditions)
            if len(found) > before:
                landed.extend(found)
                return False
            return True

        noted = self._note(item, (f"database/{self._db}/profiles", tuple(conditions)), before)
        try:
            response = self.job.session.request(
                "POST",
                f"database/{self._db}/profiles",
                body=self._body(item),
                before_retry=not_landed,
            )
        except RetryStopped:
            logger.info("A lost insert had landed; not sending it again.")
            self._settle(noted, landed=True)
            index.replace(item.key, landed)
            self.job.summary.add("inserted")
            return
        except CopernicaAPIError:
            self._settle(noted, landed=False)  # refused: nothing was created
            raise
        self._settle(noted, landed=True)
        _, new_id = created_id(response, "profile")
        index.add(item.key, new_id)
        self.job.summary.add("inserted")

    # -- the insert journal ------------------------------------------------------------
    def _note(self, item: Item, lookup: Lookup, before: int) -> list[int]:
        """Note an insert in the journal before sending it (append-only runs only)."""
        if self.job.journal is None:
            return []
        fp = fingerprint_of(self.job.summary.stream, item)
        return self.job.journal.begin([(fp, item.epoch, lookup, before)])

    def _settle(self, noted: list[int], *, landed: bool) -> None:
        if self.job.journal is not None and noted:
            if landed:
                self.job.journal.done(noted)
            else:
                self.job.journal.drop(noted)

    def _delete_profiles(self, item: Item) -> None:
        if not self.hard_delete:
            self.job.summary.add("deletes_skipped")
            return
        index = self.job.destination.index
        ids = index.lookup(self.job.session, item.key, item.key_values)
        if not ids:
            self.job.summary.add("not_found")
            return
        for profile_id in ids:
            if not self.dry_run:
                self._delete(f"profile/{profile_id}")
            self.job.summary.add("deleted")
        index.replace(item.key, [])

    def _delete(self, path: str) -> None:
        try:
            self.job.session.request("DELETE", path)
        except CopernicaAPIError as exc:
            if exc.api_message.strip().lower() not in ALREADY_REMOVED:
                raise

    # -- subprofiles -------------------------------------------------------------------
    def _parent_id(self, item: Item) -> int:
        assert item.parent_key is not None
        assert item.parent_values is not None
        ids = self.job.destination.index.lookup(
            self.job.session, item.parent_key, item.parent_values
        )
        ((name, value),) = item.parent_values.items()
        if not ids:
            database = self.job.destination.index.structure.name
            msg = f"no profile with {name} == {value!r} in database '{database}'"
            raise Rejected(msg)
        if len(ids) > 1:
            msg = f"{len(ids)} profiles have {name} == {value!r}; the parent is ambiguous"
            raise Rejected(msg)
        return ids[0]

    def _subprofile(self, item: Item) -> None:
        if item.delete and not self.hard_delete:
            self.job.summary.add("deletes_skipped")
            return
        parent = self._parent_id(item)
        collection = self.job.destination.structure.id
        path = f"profile/{parent}/subprofiles/{collection}"
        conditions = selector(self.job.destination.key_fields, item.key_values)
        if item.delete:
            ids = find_subprofiles(self.job.session, parent, collection, conditions)
            for subprofile_id in ids:
                if not self.dry_run:
                    self._delete(f"subprofile/{subprofile_id}")
                self.job.summary.add("deleted")
            if not ids:
                self.job.summary.add("not_found")
            return
        if self.dry_run or self.job.load_method in (INSERT, UPDATE_ONLY):
            existing = len(find_subprofiles(self.job.session, parent, collection, conditions))
        else:
            existing = -1
        if self.job.load_method == UPDATE_ONLY and existing == 0:
            self.job.summary.add("not_found")
            return
        if self.dry_run:
            self.job.summary.add(
                "inserted" if self.job.load_method == INSERT or existing == 0 else "updated"
            )
            return
        if self.job.load_method == INSERT:

            def not_landed(exc: BaseException) -> bool:
                return (
                    len(find_subprofiles(self.job.session, parent, collection, conditions))
                    <= existing
                )

            noted = self._note(
                item, (f"profile/{parent}/subprofiles/{collection}", tuple(conditions)), existing
            )
            try:
                self.job.session.request("POST", path, body=item.fields, before_retry=not_landed)
            except RetryStopped:
                logger.info("A lost insert had landed; not sending it again.")
            except CopernicaAPIError:
                self._settle(noted, landed=False)
                raise
            self._settle(noted, landed=True)
            self.job.summary.add("inserted")
            return
        params = [*conditions] + ([("create", "1")] if self.job.load_method == UPSERT else [])
        response = self.job.session.request("PUT", path, params=params, body=item.fields)
        created, _ = created_id(response, "subprofile")
        self.job.summary.add("inserted" if created else "updated")
