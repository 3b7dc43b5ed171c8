"""The tap's settings: their JSON Schema (for --about and validation) and a typed view.

`TapSettings.from_config` also makes the checks that need no request, with the messages a
person can act on; the checks that do (the token, database names) are the tap's `preflight`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from copernica_api.settings import CONNECTION_SETTINGS, REQUEST_SETTINGS, ClientSettings
from copernica_api.timeutil import parse_instant

#: The mailing products, as they prefix entries of `emailing_ids` and `destination_ids`.
PRODUCTS = ("ms", "publisher")
DEFAULT_WINDOW_DAYS = 7

MAX_PAGE_SIZE = 1000

#: An ID as a config file or meltano.yml writes it: a number (1201) or a string ("1201").
ID_OR_NAME = th.CustomType({"type": ["integer", "string"]})

SETTINGS = th.PropertiesList(
    *CONNECTION_SETTINGS,
    *REQUEST_SETTINGS,
    th.Property(
        "start_date",
        th.DateTimeType,
        description="ISO 8601 date or date-time. On a first run, profiles and subprofiles "
        "modified before it, and emailings, destinations and events before it, are skipped; "
        "bookmarks take over afterwards.",
    ),
    th.Property(
        "database_ids",
        th.ArrayType(ID_OR_NAME),
        description="Databases to read, by ID or name (case-insensitive). Default: all.",
    ),
    th.Property(
        "emailing_ids",
        th.ArrayType(th.StringType),
        description="Only these emailings, as 'ms:<ID>' (Marketing Suite) or "
        "'publisher:<ID>': per-emailing streams read just them, and the event streams read "
        "their per-emailing endpoints instead of the account-wide ones. Default: all.",
    ),
    th.Property(
        "destination_ids",
        th.ArrayType(th.StringType),
        description="Only these destinations (messages), as 'ms:<ID>' or 'publisher:<ID>': "
        "the event streams then read their per-destination endpoints. Default: all.",
    ),
    th.Property(
        "event_window_days",
        th.IntegerType(minimum=1),
        default=7,
        description="Events are read in time windows; the bookmark moves after each one, so "
        "a run that stops resumes where it was. This is the first window's length in days "
        "when the emailing list gives no estimate; windows then adapt (twice as long after "
        "a sparse one, shorter after one that needed several pages, from one hour up to 64 "
        "times this), and the next size is kept in STATE (`window_seconds`).",
    ),
    th.Property(
        "webhook_ids",
        th.ArrayType(ID_OR_NAME),
        description="Webhooks to read, by ID: the API has no list of webhooks, only a "
        "lookup by ID. Default: none (the webhooks stream is then empty).",
    ),
    th.Property(
        "consumption_start_date",
        th.DateTimeType,
        description="First month of the consumption stream on a first run (ISO 8601 date); "
        "wins over `start_date`. Default: the same month a year ago. Never before the month "
        "of the account's oldest database or first emailing. Bookmarks take over afterwards.",
    ),
    th.Property(
        "page_size",
        th.IntegerType(minimum=1, maximum=MAX_PAGE_SIZE),
        default=MAX_PAGE_SIZE,
        description="Rows per request, 1 to 1000 (the API's maximum).",
    ),
    th.Property(
        "lookback_seconds",
        th.IntegerType(minimum=0),
        default=60,
        description="Changes made this many seconds before a run reads them are read again by "
        "the next run, so a profile changed while the run read it, or a clock difference "
        "between Copernica's servers, can never hide a change.",
    ),
    th.Property(
        "max_parallel_requests",
        th.IntegerType(minimum=1, maximum=10),
        default=4,
        description="Requests in flight at once across the tap: profiles read by ID ranges "
        "(full loads, first syncs from `start_date`, mass updates), and the first page of "
        "each partition (database, collection, view, emailing) read ahead, with, under "
        "latency, a profile partition's highest ID and first ranges (1 = strictly one after "
        "another). Records and STATE come out as in a serial run.",
    ),
    th.Property(
        "helper_processes",
        th.IntegerType(minimum=0, maximum=8),
        description="Processes beside the tap that turn profile pages read by ID ranges into "
        "RECORD lines, so that decoding uses more than one core (0 = none: the tap decodes "
        "every page itself). Default: one per core beyond the first, at most 2; none with "
        "`max_parallel_requests` 1. The records and STATE are the same either way.",
    ),
    th.Property(
        "max_requests",
        th.IntegerType(minimum=1),
        description="Most REST API requests one run may send (every try counts, retries "
        "included; the authentication call does not). Once they are spent the run emits the "
        "pages already answered and a STATE to continue from, logs a warning with what is "
        "left unread, and exits 0; the next run continues there, skipping what the runs "
        "before it finished. Default: no limit.",
    ),
    th.Property(
        "progress_interval",
        th.IntegerType(minimum=0),
        default=30,
        description="Seconds between progress lines (records, pages, rate) in the log.",
    ),
    th.Property(
        "utc_timestamps",
        th.BooleanType,
        default=False,
        description="Write every date-time of the records in UTC ('2024-07-01T08:00:00Z') "
        "instead of the account's local time with its offset ('2024-07-01T10:00:00+02:00'). "
        "The same instant either way; turn it on for loaders that drop the offset (e.g. "
        "pipelinewise-target-postgres), which would otherwise store winter and summer wall "
        "times in one column. Dates and bookmarks are unchanged.",
    ),
    th.Property(
        "fail_fast",
        th.BooleanType,
        default=False,
        description="Stop the whole run at the first stream the API refuses for good (a "
        "4xx such as 'Invalid method', 403 or 404). Default: that stream stops, the others "
        "finish, the failed ones are listed at the end and the exit code is 3.",
    ),
).to_dict()


@dataclass(frozen=True)
class TapSettings:
    """The tap's config, typed, with the defaults of `SETTINGS` for what is left out."""

    client: ClientSettings
    tz: ZoneInfo
    #: ISO 8601 as given (parsed in the account's zone where used); None: not set
    start_date: str | None
    #: as given (IDs or names, stripped); empty: every database
    database_ids: tuple[str, ...]
    #: (product, emailing ID) pairs; None: not set
    emailing_ids: tuple[tuple[str, int], ...] | None
    #: (product, destination ID) pairs; None: not set
    destination_ids: tuple[tuple[str, str], ...] | None
    event_window_days: int
    webhook_ids: tuple[int, ...]
    consumption_start_date: str | None
    page_size: int
    lookback_seconds: int
    max_parallel_requests: int
    progress_interval: int
    fail_fast: bool = False
    #: requests one run may send; None: no limit
    max_requests: int | None = None
    #: date-times of records in UTC (`...Z`) instead of with the account's offset
    utc_timestamps: bool = False
    #: page helper processes (`page_helpers.py`); None: as the machine suits
    helper_processes: int | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TapSettings:
        """The typed settings; `ConfigValidationError` naming each setting that is wrong."""
        # A malformed emailing or destination entry is reported on its own, before the rest.
        emailings = _product_refs(
            config,
            "emailing_ids",
            "emailing ID",
            "'ms:123' for a Marketing Suite emailing or 'publisher:45' for Publisher",
        )
        destinations = _product_refs(
            config,
            "destination_ids",
            "destination ID",
            "'ms:123' or 'publisher:<the destination's ID>'",
        )
        client = ClientSettings.from_config(config)
        errors: list[str] = []
        tz = None
        try:
            tz = client.timezone()
        except ValueError as exc:
            errors.append(str(exc))
        start_date = config.get("start_date")
        if start_date:
            try:
                parse_instant(str(start_date), ZoneInfo("UTC"))
            except ValueError:
                errors.append(
                    f"`start_date`: {start_date!r} is not an ISO 8601 date or date-time "
                    f"(e.g. 2024-01-31 or 2024-01-31T00:00:00Z)."
                )
        hooks: list[int] = []
        try:
            hooks = webhook_ids(config.get("webhook_ids"))
        except ConfigValidationError as exc:
            errors.append(str(exc))
        if errors or tz is None:
            raise ConfigValidationError(errors[0], errors=errors)
        consumption = config.get("consumption_start_date")
        return cls(
            client=client,
            tz=tz,
            start_date=str(start_date) if start_date else None,
            database_ids=tuple(str(d).strip() for d in config.get("database_ids") or []),
            emailing_ids=None
            if emailings is None
            else tuple((product, int(ref)) for product, ref in emailings),
            destination_ids=destinations,
            event_window_days=int(config.get("event_window_days") or DEFAULT_WINDOW_DAYS),
            webhook_ids=tuple(hooks),
            consumption_start_date=str(consumption) if consumption else None,
            page_size=int(config.get("page_size", MAX_PAGE_SIZE)),
            lookback_seconds=int(config.get("lookback_seconds", 60)),
            max_parallel_requests=int(config.get("max_parallel_requests", 4)),
            progress_interval=int(config.get("progress_interval", 30)),
            fail_fast=bool(config.get("fail_fast", False)),
            max_requests=_optional_int(config.get("max_requests")),
            utc_timestamps=bool(config.get("utc_timestamps", False)),
            helper_processes=_optional_int(config.get("helper_processes")),
        )

    def emailings_of(self, product: str) -> list[int] | None:
        """IDs of `product` named in `emailing_ids`; None when the setting is not used."""
        return _of(self.emailing_ids, product)

    def destinations_of(self, product: str) -> list[str] | None:
        """Destinations of `product` named in `destination_ids`; None when not used."""
        return _of(self.destination_ids, product)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _of(pairs: Iterable[tuple[str, Any]] | None, product: str) -> Any:
    return None if pairs is None else [ref for owner, ref in pairs if owner == product]


def _product_refs(
    config: Mapping[str, Any], setting: str, what: str, example: str
) -> tuple[tuple[str, str], ...] | None:
    """The (product, reference) pairs of a `<product>:<ref>` list setting; None when unset."""
    entries = config.get(setting)
    if not entries:
        return None
    refs: list[tuple[str, str]] = []
    for entry in entries:
        prefix, _, ref = str(entry).strip().partition(":")
        prefix, ref = prefix.strip().lower(), ref.strip()
        valid = ref.isdigit() if what == "emailing ID" else ref.isalnum()
        if prefix not in PRODUCTS or not valid:
            msg = f"`{setting}`: {entry!r} is not '<product>:<{what}>'; use e.g. {example}."
            raise ConfigValidationError(msg, errors=[msg])
        refs.append((prefix, ref))
    return tuple(refs)


def webhook_ids(values: Any) -> list[int]:
    """The `webhook_ids` setting as integers, in order, without repeats."""
    ids: list[int] = []
    for value in values or []:
        text = str(value).strip()
        if not text.isdigit():
            msg = f"`webhook_ids`: {value!r} is not a webhook ID (a positive whole number)."
            raise ConfigValidationError(msg, errors=[msg])
        if int(text) not in ids:
            ids.append(int(text))
    return ids
