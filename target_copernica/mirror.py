"""Mirror mode: when a full table ends, remove the profiles in scope that it did not contain.

A source sends a full table's records with a `version` and then `ACTIVATE_VERSION` with that
version: the table is complete. With `mirror_mode` on, the target then deletes (or
unsubscribes) the in-scope profiles whose key none of those records had:

- only on an ACTIVATE_VERSION that follows records of its version: one sent before the
  records (tap-postgres sends one before and one after) or a stream cut off before its
  ACTIVATE_VERSION removes nothing; nor does one of a version older than the newest the
  stream sent (records of such a version are written, but say nothing about the table);
- a table may span several runs (tap-copernica split by `max_requests`, tap-postgres
  resuming an interrupted full table: every part sends records under one version, only the
  last ACTIVATE_VERSION): each (stream, version)'s keys are kept in a local file next to the
  insert journal, written before any STATE covering them is emitted, combined at the
  ACTIVATE_VERSION and deleted once the mirror has finished (so a run that crashed while
  removing finds them again and removes no more than the table's absentees);
- only within `mirror_scope`, each stream's own (a marker value per stream, or a database
  only that stream is routed to: `settings.py`), which the target sets on every profile it
  writes for the stream;
- only after every record read so far is written (every sink drained, the running import
  ended), and by the same normalised key the target matches profiles with; a rejected record
  counts as present when its key is usable, and one without a usable key stops the removal;
  so does a soft-deleted record (`_sdc_deleted_at`) when `hard_delete` is off;
- never more than `mirror_max_delete_fraction` of the profiles in scope that were there
  before the version (not those it inserted; in unsubscribe mode, not those already
  unsubscribed): above it nothing is removed and the run ends with `EXIT_MIRROR_REFUSED`
  once the other streams have landed; so does a removal that failed;
- in a dry run (`mirror_dry_run` or `dry_run`) the profiles are listed, not removed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from target_copernica.destination import Key, KeyIndex, Structure, row_id, row_values
from target_copernica.records import Item
from target_copernica.registry import DestinationRegistry
from target_copernica.settings import MIRROR_DELETE, MirrorSettings
from target_copernica.summary import StreamSummary

logger = logging.getLogger("target_copernica.mirror")
#: The exit status of a run in which a mirror was refused or failed (its other data landed).
EXIT_MIRROR_REFUSED = 3
#: Profiles named in the summary line of a dry run (the log lists every one).
MAX_LISTED_IN_SUMMARY = 20


@dataclass
class VersionRecords:
    """What the records of one stream's full-table version held (this run's and, read from
    its key file, earlier runs')."""

    version: int
    keys: set[Key] = field(default_factory=set)
    records: int = 0
    keyless: int = 0  # rejected records without a usable key
    keyless_reason: str = ""
    inserted: set[Key] = field(default_factory=set)  # keys it created profiles for
    existing: set[Key] = field(default_factory=set)  # keys whose profile was there before
    unsaved: dict[str, Any] = field(default_factory=dict)  # not in the key file yet

    def add_unsaved(self, name: str, value: Any) -> None:
        if isinstance(value, int):
            self.unsaved[name] = self.unsaved.get(name, 0) + value
        elif isinstance(value, str):
            self.unsaved.setdefault(name, value)
        else:
            self.unsaved.setdefault(name, []).append(list(value))


class KeyFiles:
    """The key files of a run's full tables: `<journal dir>/mirror_keys/<stream>.<version>.jsonl`,
    one JSON line per save (keys, inserted and existing keys, record counts), flushed and
    synced to disk before the STATE that covers them is emitted."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self.directory = directory
        # A dry run (`dry_run`) writes nothing, here either; it reads what real runs left,
        # so that its list agrees with theirs.
        self.read_only = read_only

    def path(self, stream: str, version: int) -> Path:
        return self.directory / f"{quote(stream, safe='')}.{version}.jsonl"

    def versions(self, stream: str) -> list[int]:
        """The versions of a stream that have a key file (an earlier run's parts)."""
        prefix = f"{quote(stream, safe='')}."
        found: list[int] = []
        if not self.directory.is_dir():
            return found
        for path in self.directory.iterdir():
            middle = path.name[len(prefix) : -len(".jsonl")]
            if path.name.startswith(prefix) and path.name.endswith(".jsonl") and middle.isdigit():
                found.append(int(middle))
        return sorted(found)

    def read(self, stream: str, version: int, into: VersionRecords) -> None:
        path = self.path(stream, version)
        if not path.exists():
            return
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    saved = json.loads(line)
                    into.keys.update(tuple(k) for k in saved.get("keys", ()))
                    into.inserted.update(tuple(k) for k in saved.get("inserted", ()))
                    into.existing.update(tuple(k) for k in saved.get("existing", ()))
                    into.records += int(saved.get("records", 0))
                    into.keyless += int(saved.get("keyless", 0))
                    into.keyless_reason = into.keyless_reason or str(saved.get("reason", ""))
                except (ValueError, TypeError, AttributeError):
                    # The last line of a killed run may be cut off: its STATE never went out,
                    # so the source sends those records again.
                    logger.warning("%s line %d is incomplete; ignoring it.", path, number)

    def append(self, stream: str, version: int, saved: Mapping[str, Any]) -> None:
        if self.read_only:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.path(stream, version).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(saved, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self, stream: str, up_to: int) -> None:
        """Forget the stream's versions up to `up_to` (their tables are done with)."""
        if self.read_only:
            return
        for version in self.versions(stream):
            if version <= up_to:
                self.path(stream, version).unlink(missing_ok=True)


@dataclass(frozen=True)
class MirrorTarget:
    """Where one stream's mirror acts: its database, key and scope marker."""

    stream: str
    database: Structure
    index: KeyIndex  # the stream's key index: how keys are normalised, and what to forget
    key_fields: tuple[str, ...]  # as defined in the database
    marker_field: str | None  # names as defined in the database
    marker_value: str  # the stream's own value of the marker field
    marker_interest: str | None
    unsubscribe_field: str | None
    unsubscribe_interest: str | None
    summary: StreamSummary

    @property
    def scope_id(self) -> tuple[str, str | None, str | None, str | None]:
        value = self.marker_value if self.marker_field else None
        return (self.database.id, self.marker_field, value, self.marker_interest)


@dataclass
class InScope:
    """What the listing of a scope found."""

    profiles: int = 0
    before: int = 0  # there before the version (the fraction's basis)
    absent: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    still_unsubscribed: int = 0  # in the version, but unsubscribed (unsubscribe is sticky)


class MirrorBook:
    """The keys of each mirrored stream's full-table versions, and the mirrors refused."""

    def __init__(self, settings: MirrorSettings, key_files: KeyFiles) -> None:
        self.settings = settings
        self.files = key_files
        self._versions: dict[str, dict[int, VersionRecords]] = {}
        self._newest: dict[str, int] = {}
        self._writers: dict[tuple[str, str | None, str | None, str | None], set[str]] = {}
        self._empty: dict[tuple[str, int], MirrorTarget] = {}  # ACTIVATE_VERSION, no record
        self._mirrored: set[tuple[str, int]] = set()
        self.refusals: list[str] = []

    # -- while records are read (the main thread) ---------------------------------------
    def writes_into(self, target: MirrorTarget) -> None:
        """A stream writes into a scope (two streams in one scope would remove each
        other's profiles; the config rules that out, this is the last guard)."""
        self._writers.setdefault(target.scope_id, set()).add(target.stream)

    def _known(self, stream: str) -> dict[int, VersionRecords]:
        """The stream's versions; at its first use, those earlier runs left key files for."""
        known = self._versions.get(stream)
        if known is None:
            known = self._versions[stream] = {}
            for version in self.files.versions(stream):
                self._newest[stream] = max(self._newest.get(stream, version), version)
        return known

    def _records(self, stream: str, version: int) -> VersionRecords | None:
        """The version's records, None when a newer version of the stream was seen."""
        known = self._known(stream)
        current = known.get(version)
        if current is None:
            if version < self._newest.get(stream, version):
                return None
            self._newest[stream] = version
            current = known[version] = VersionRecords(version)
            self.files.read(stream, version, current)
        return current

    def note(self, stream: str, version: Any, key: Key | None, reason: str = "") -> None:
        """One record of a stream: its key (None: rejected without a usable key, `reason`
        says why). Records without a version belong to no full table; those of a version
        older than the newest seen are written, not counted."""
        if not _is_version(version):
            return
        records = self._records(stream, version)
        if records is None:
            return
        records.records += 1
        records.add_unsaved("records", 1)
        if key is not None:
            if key not in records.keys:
                records.keys.add(key)
                records.add_unsaved("keys", key)
        else:
            records.keyless += 1
            records.add_unsaved("keyless", 1)
            records.add_unsaved("reason", reason)
        self._empty.pop((stream, version), None)

    def classify(self, stream: str, items: Iterable[Item], exists: Callable[[Key], bool]) -> None:
        """Before a batch is written: which keys of each version create a profile (not in
        scope before the version) and which were there already (the fraction's basis)."""
        known = self._versions.get(stream, {})
        for item in items:
            if item.delete or item.version is None:
                continue
            records = known.get(item.version)
            key = item.key
            if records is None or key in records.inserted or key in records.existing:
                continue
            if exists(key):
                records.existing.add(key)
                records.add_unsaved("existing", key)
            else:
                records.inserted.add(key)
                records.add_unsaved("inserted", key)

    def save(self) -> None:
        """Write what the key files lack (before a STATE is emitted: a rerun starts after
        that STATE, so the records before it come only from the files)."""
        for stream, known in self._versions.items():
            for version, records in known.items():
                if records.unsaved:
                    saved, records.unsaved = records.unsaved, {}
                    self.files.append(stream, version, saved)

    def records_of(self, stream: str, version: int) -> VersionRecords | None:
        """The records of `version` read so far, in this run and earlier ones (None when
        none were)."""
        current = self._versions.get(stream, {}).get(version)
        if current is None:
            current = VersionRecords(version)
            self.files.read(stream, version, current)
        return current if current.records else None

    def finish(self) -> None:
        """The end of the run: a table that ended without any record was not mirrored."""
        for (stream, version), target in self._empty.items():
            message = (
                f"Stream '{stream}': nothing was mirrored: the table had no records (version "
                f"{version} ended without any); an empty source would remove every profile "
                f"in scope, so it removes none."
            )
            logger.warning(message)
            target.summary.note(message)
        self._empty.clear()

    # -- when a full table ends ----------------------------------------------------------
    def mirror(
        self,
        target: MirrorTarget,
        version: int,
        *,
        registry: DestinationRegistry,
        write_everything: Callable[[], None],
        max_parallel: int,
    ) -> None:
        """Remove what `version` of the stream did not contain (see the module's text)."""
        stream = target.stream
        self._known(stream)
        newest = self._newest.get(stream)
        if (stream, version) in self._mirrored:
            logger.info(
                "Stream '%s': ACTIVATE_VERSION %s again; its table was mirrored already.",
                stream,
                version,
            )
            return
        if newest is not None and version < newest:
            logger.info(
                "Stream '%s': ACTIVATE_VERSION %s is older than version %s the stream sent "
                "since; mirror removes nothing for it.",
                stream,
                version,
                newest,
            )
            return
        if self.records_of(stream, version) is None:
            logger.info(
                "Stream '%s': ACTIVATE_VERSION %s came before any record of that version "
                "(or the table is empty); mirror removes nothing for it.",
                stream,
                version,
            )
            self._empty[(stream, version)] = target
            return
        others = sorted(self._writers.get(target.scope_id, set()) - {stream})
        if others:
            self._refuse(
                target,
                f"stream(s) {others} write into the same mirror scope ({self._scope(target)}), "
                f"so the profiles they wrote would look absent from '{stream}'. Give each "
                f"mirrored stream its own database (`mirror_scope.database`) or marker",
            )
            return
        write_everything()  # every record of the version written, the last import ended
        self.save()  # before anything is removed: a rerun after a crash needs every key
        records = self.records_of(stream, version)
        assert records is not None
        if records.keyless:
            message = (
                f"Stream '{stream}': mirror skipped: {records.keyless} rejected record(s) of "
                f"version {version} have no usable key ({records.keyless_reason}), so the "
                f"profiles they stand for cannot be told from absent ones. Fix them (see the "
                f"rejected-records file) and rerun."
            )
            logger.warning(message)
            target.summary.note(message)
            self._done(stream, version, finished=False)
            return
        found = self._absent(target, records, registry)
        finished = self._act(target, version, found, registry=registry, max_parallel=max_parallel)
        self._done(stream, version, finished=finished and not self.settings.dry_run)

    def _done(self, stream: str, version: int, *, finished: bool) -> None:
        """The version's ACTIVATE_VERSION is dealt with: forget its keys (and older
        versions'). Their files go only once its removals are all done: a dry run, a
        refusal or a failure leaves them for a rerun of the same table's last part, which
        would otherwise take the earlier parts' profiles for absent."""
        self._mirrored.add((stream, version))
        known = self._versions.get(stream, {})
        for old in [v for v in known if v <= version]:
            del known[old]
        if finished:
            self.files.remove(stream, version)

    def _absent(
        self, target: MirrorTarget, records: VersionRecords, registry: DestinationRegistry
    ) -> InScope:
        """The profiles in scope: how many, how many were there before the version, and
        those (ID, key values) whose key the version lacks and that are not unsubscribed
        already."""
        conditions = []
        if target.marker_field:
            conditions.append(("fields[]", f"{target.marker_field}=={target.marker_value}"))
        settings = self.settings
        unsubscribing = settings.mode != MIRROR_DELETE
        check = [*target.key_fields]
        if target.unsubscribe_field:
            check.append(target.unsubscribe_field)
        found = InScope()
        present = records.keys
        unsubscribed_present: set[Key] = set()
        for row in registry.profiles(target.database, conditions):
            interests = _interests_of(row)
            if target.marker_interest and target.marker_interest.casefold() not in interests:
                continue
            found.profiles += 1
            values = row_values(row, check)
            keys = {k: values[k] for k in target.key_fields}
            key = target.index.key_of(keys)
            unsubscribed = unsubscribing and self._unsubscribed(target, values, interests)
            if key in present:
                if unsubscribed:
                    unsubscribed_present.add(key)
                    found.still_unsubscribed += 1
                continue
            if unsubscribed:
                continue
            found.before += 1
            found.absent.append((row_id(row), keys))
        # The version's profiles that were there before it: those its records updated
        # (in a dry run not marked yet, so not listed), not those still unsubscribed.
        found.before += len(records.existing - unsubscribed_present)
        return found

    def _unsubscribed(
        self, target: MirrorTarget, values: Mapping[str, str], interests: set[str]
    ) -> bool:
        settings = self.settings
        name = target.unsubscribe_field
        if name:
            database = target.database
            have = database.normalize(name, values.get(name, ""))
            return have == database.normalize(name, settings.unsubscribe_value)
        interest = (target.unsubscribe_interest or "").casefold()
        return (interest in interests) == settings.unsubscribe_interest_on

    def _act(
        self,
        target: MirrorTarget,
        version: int,
        found: InScope,
        *,
        registry: DestinationRegistry,
        max_parallel: int,
    ) -> bool:
        """Remove (or list) the absent profiles; whether a real run removed all it should
        (False: a dry run, a refusal or a failed removal)."""
        settings = self.settings
        stream = target.stream
        unsubscribing = settings.mode != MIRROR_DELETE
        verb = "unsubscribe" if unsubscribing else "delete"
        summary = target.summary
        absent = found.absent
        if found.still_unsubscribed:
            message = (
                f"Stream '{stream}': {found.still_unsubscribed} profile(s) of version {version} "
                f"are back in the source but still unsubscribed: mirror never subscribes a "
                f"profile again; undo `mirror_unsubscribe` on them yourself if they should get "
                f"mail."
            )
            logger.warning(message)
            summary.note(message)
        if not found.profiles:
            message = (
                f"Stream '{stream}': mirror ({verb}): no profile in scope "
                f"({self._scope(target)}); nothing to {verb}. If the stream's profiles exist, "
                f"check the scope (a marker no profile carries looks like this)."
            )
            logger.warning(message)
            summary.note(message)
            return True
        if not absent:
            summary.note(
                f"Stream '{stream}': mirror ({verb}): all {found.profiles} profile(s) in scope "
                f"are in version {version}; nothing to {verb}."
            )
            return True
        basis = found.before
        fraction = len(absent) / basis
        over = fraction > settings.max_fraction
        before = "in scope before version " + str(version)
        if unsubscribing:
            before += " and not unsubscribed"
        reason = (
            f"{len(absent)} of {basis} profiles {before} would have been removed "
            f"({fraction:.1%} > limit {settings.max_fraction:.1%}); raise "
            f"mirror_max_delete_fraction or check the source"
        )
        if settings.dry_run:
            for profile_id, keys in absent:
                logger.info(
                    "Stream '%s': mirror dry run: would %s profile %d (%s).",
                    stream,
                    verb,
                    profile_id,
                    _describe(keys),
                )
            listed = ", ".join(f"{i} ({_describe(k)})" for i, k in absent[:MAX_LISTED_IN_SUMMARY])
            more = len(absent) - MAX_LISTED_IN_SUMMARY
            summary.add(f"mirror_would_{verb}", len(absent))
            summary.note(
                f"Stream '{stream}': mirror dry run ({verb}): {len(absent)} of {basis} "
                f"profile(s) {before} are not in it: {listed}"
                + (f" and {more} more (each in the log above)" if more > 0 else "")
                + (f". A real run would remove none: {reason}." if over else ".")
            )
            if over:
                logger.warning(
                    "Stream '%s': mirror: a real run would remove none: %s.", stream, reason
                )
            return False
        if over:
            self._refuse(target, reason)
            return False
        done, failed = self._remove(target, absent, registry, max_parallel)
        counter = "mirror_unsubscribed" if unsubscribing else "mirror_deleted"
        summary.add(counter, len(done))
        message = (
            f"Stream '{stream}': mirror: {verb}d {len(done)} of {basis} profile(s) {before} "
            f"({self._scope(target)}): those it did not contain."
        )
        if failed:
            first_id, first_error = failed[0]
            summary.add(f"mirror_{verb}_failed", len(failed))
            message = (
                f"Stream '{stream}': mirror: {verb}d {len(done)}, failed {len(failed)} of the "
                f"{len(absent)} profile(s) version {version} did not contain (first error, "
                f"profile {first_id}: {first_error}); rerun to finish"
            )
            self._refuse(target, message, prefix=False)
            return False
        logger.info(message)
        summary.note(message)
        return True

    def _remove(
        self,
        target: MirrorTarget,
        absent: list[tuple[int, dict[str, str]]],
        registry: DestinationRegistry,
        max_parallel: int,
    ) -> tuple[list[int], list[tuple[int, str]]]:
        """Remove each profile; the IDs removed, and those that failed with their error."""
        deleting = self.settings.mode == MIRROR_DELETE
        body = None if deleting else self._unsubscribe_body(target)
        keys_of = dict(absent)

        def remove(profile_id: int) -> str | None:
            try:
                if body is None:
                    registry.delete_profile(profile_id)
                    target.index.discard(target.index.key_of(keys_of[profile_id]), [profile_id])
                else:
                    registry.update_profile(profile_id, body)
            except Exception as exc:  # reported per profile; the others go on
                return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            return None

        ids = [i for i, _ in absent]
        if max_parallel <= 1 or len(ids) <= 1:
            errors = [remove(i) for i in ids]
        else:
            with ThreadPoolExecutor(max_parallel, thread_name_prefix="copernica-mirror") as pool:
                errors = list(pool.map(remove, ids))
        done = [i for i, error in zip(ids, errors, strict=True) if error is None]
        failed = [(i, error) for i, error in zip(ids, errors, strict=True) if error is not None]
        return done, failed

    def _unsubscribe_body(self, target: MirrorTarget) -> dict[str, Any]:
        settings = self.settings
        if target.unsubscribe_field:
            return {"fields": {target.unsubscribe_field: settings.unsubscribe_value}}
        interest = target.unsubscribe_interest or ""
        return {"interests": {interest: 1 if settings.unsubscribe_interest_on else 0}}

    def _scope(self, target: MirrorTarget) -> str:
        parts = [f"database '{target.database.name}'"]
        if target.marker_field:
            parts.append(f"{target.marker_field} == {target.marker_value!r}")
        if target.marker_interest:
            parts.append(f"interest '{target.marker_interest}'")
        return ", ".join(parts)

    def _refuse(self, target: MirrorTarget, reason: str, *, prefix: bool = True) -> None:
        message = (
            f"Stream '{target.stream}': mirror removed nothing: {reason}."
            if prefix
            else (reason + ".")
        )
        logger.error(message)
        target.summary.note(message)
        self.refusals.append(message)


def mark(item: Item, target: MirrorTarget) -> None:
    """Put the stream's marker on a record's write, so the profile it makes is in scope."""
    if target.marker_field:
        item.fields[target.marker_field] = target.marker_value
    interest = target.marker_interest
    if interest:
        if item.interests is None:
            item.interests = {interest: 1}
        elif isinstance(item.interests, dict):
            item.interests[interest] = 1
        elif interest.casefold() not in {name.casefold() for name in item.interests}:
            item.interests.append(interest)


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _interests_of(row: Mapping[str, Any]) -> set[str]:
    raw = row.get("interests")
    names: Iterable[Any] = raw if isinstance(raw, list) else ()
    return {str(name).casefold() for name in names}


def _describe(keys: Mapping[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in keys.items())
