"""Deterministic seed data: three databases with realistic, tie-heavy timestamps."""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable

from . import mailings
from .clock import format_local
from .fieldtypes import ZERO_DATE, ZERO_DATETIME, format_float
from .store import Store
from .structure import seed as seed_structure

DAY = 86400
SPAN_DAYS = 400

FIRST_NAMES = (
    "Anna",
    "Bram",
    "Carla",
    "Daan",
    "Eva",
    "Floor",
    "Gijs",
    "Hanna",
    "Ivo",
    "Julia",
    "Kees",
    "Lotte",
    "Milan",
    "Noor",
    "Otto",
    "Pien",
    "Ruben",
    "Sanne",
    "Thijs",
    "Vera",
)
#: The Customers database's fields: (name, type, default), one of every documented type.
CUSTOMER_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("firstname", "text", ""),
    ("lastname", "text", ""),
    ("city", "text", ""),
    ("email", "email", ""),
    ("mobile", "phone_gsm", ""),
    ("fax", "phone_fax", ""),
    ("segment", "select", "gold\nsilver\nbronze"),
    ("notes", "big", ""),
    ("age", "integer", "0"),
    ("loyalty_points", "integer", "0"),
    ("score", "float", "0"),
    ("birthdate", "date", ""),
    ("last_order_date", "empty_date", ""),
    ("signup_at", "datetime", ""),
    ("last_login_at", "empty_datetime", ""),
    ("account_ref", "foreign_key", "0"),
)

LAST_NAMES = (
    "Jansen",
    "de Vries",
    "van Dijk",
    "Bakker",
    "Visser",
    "Smit",
    "Meijer",
    "de Boer",
    "Mulder",
    "de Groot",
    "Bos",
    "Vos",
    "Peters",
    "Hendriks",
    "van Leeuwen",
    "Dekker",
)
CITIES = ("Amsterdam", "Rotterdam", "Utrecht", "Den Haag", "Eindhoven", "Groningen", "Leiden")
NOTES = ("Prefers e-mail", "Called about delivery", "VIP since launch", "Moved abroad", "Ünïcode ✓")
SUBJECTS = ("Late delivery", "Wrong size", "Invoice question", "Refund", "Login problem")


class Timeline:
    """Creation times in import batches (many rows per second) plus shared update moments."""

    def __init__(self, rng: random.Random, start: int, end: int, rows: int) -> None:
        self._rng = rng
        self.start, self.end = start, end
        times: list[int] = []
        while len(times) < rows:
            size = rng.randint(5, 50) if rng.random() < 0.7 else rng.randint(1, 3)
            times.extend([rng.randint(start, end)] * size)
        self.created = sorted(times[:rows])
        self._events = sorted(rng.randint(start, end) for _ in range(max(3, rows // 15)))

    def later(self, after: int, keep_chance: float) -> int:
        """A shared moment at or after ``after``; ``after`` itself with ``keep_chance``."""
        if self._rng.random() < keep_chance:
            return after
        first = bisect.bisect_left(self._events, after)
        if first == len(self._events):
            return after
        return self._rng.choice(self._events[first:])


class Seeder:
    def __init__(self, store: Store, seed: int, profiles: int, anchor: float) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.profiles = profiles
        self.end = int(anchor) - 3600
        self.start = self.end - SPAN_DAYS * DAY

    # value helpers ---------------------------------------------------------
    def stamp(self, epoch: int) -> str:
        return format_local(epoch, self.store.tz)

    def day(self, start: int, end: int) -> str:
        return self.stamp(self.rng.randint(start, end))[:10]

    def moment(self, start: int, end: int) -> str:
        return self.stamp(self.rng.randint(start, end))

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def maybe(self, chance: float, make: Callable[[], str], empty: str = "") -> str:
        return make() if self.rng.random() < chance else empty

    def secret(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def digits(self, count: int) -> str:
        return "".join(str(self.rng.randint(0, 9)) for _ in range(count))

    def person(self, n: int) -> tuple[str, str, str]:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        local = f"{first}.{last.replace(' ', '')}{n}".lower()
        return first, last, f"{local}@example.com"

    # structure -------------------------------------------------------------
    def run(self) -> None:
        store = self.store
        created = self.stamp(self.start - 30 * DAY)
        customers = store.add_database("Customers", "Webshop customers", created)
        for name, ftype, value in CUSTOMER_FIELDS:
            store.add_field("database", customers, name, ftype, value, index=name == "email")
        for interest in ("news", "offers", "events"):
            store.add_interest(customers, interest, "mail")
        orders = store.add_collection(customers, "Orders")
        for name, ftype in (
            ("order_id", "text"),
            ("amount", "float"),
            ("ordered_at", "datetime"),
            ("quantity", "integer"),
        ):
            store.add_field("collection", orders, name, ftype)
        tickets = store.add_collection(customers, "Tickets")
        store.add_field("collection", tickets, "subject", "text")
        store.add_field("collection", tickets, "status", "select", "open\nclosed")
        store.add_field("collection", tickets, "opened_on", "date")

        newsletter = store.add_database("Newsletter", "Newsletter sign-ups", created)
        for name, ftype, value in (
            ("email", "email", ""),
            ("name", "text", ""),
            ("optin", "select", "yes\nno"),
            ("signup", "date", ""),
        ):
            store.add_field("database", newsletter, name, ftype, value)
        store.add_interest(newsletter, "weekly", "newsletter")

        legacy = store.add_database("Legacy", "Imported from the old CRM", created)
        for name in ("modified", "email", "code_value"):
            store.add_field("database", legacy, name, "email" if name == "email" else "text")
        notes = store.add_collection(legacy, "Notes")
        store.add_field("collection", notes, "note", "text")
        store.add_field("collection", notes, "noted_at", "datetime")

        self.customers(customers, orders, tickets)
        self.newsletter(newsletter)
        self.legacy(legacy, notes)

    # rows ------------------------------------------------------------------
    def customers(self, database: int, orders: int, tickets: int) -> None:
        line = Timeline(self.rng, self.start, self.end, self.profiles)
        sub_line = Timeline(self.rng, self.start, self.end, self.profiles * 2)
        past = self.start - 3 * 365 * DAY
        for n, created in enumerate(line.created, start=1):
            first, last, email = self.person(n)
            values = {
                "firstname": first,
                "lastname": last,
                "city": self.maybe(0.9, lambda: self.rng.choice(CITIES)),
                "email": email,
                "mobile": self.maybe(0.75, lambda: "+316" + self.digits(8)),
                "fax": self.maybe(0.3, lambda: "+3120" + self.digits(7)),
                "segment": self.maybe(0.8, lambda: self.rng.choice(("gold", "silver", "bronze"))),
                "notes": self.maybe(0.4, lambda: self.rng.choice(NOTES)),
                "age": self.maybe(0.9, lambda: str(self.rng.randint(18, 90)), "0"),
                "loyalty_points": str(self.rng.randint(0, 5000)),
                "score": format_float(round(self.rng.uniform(0, 100), 2)),
                "birthdate": self.maybe(
                    0.85, lambda: self.day(-946_684_800, 1_104_537_600), ZERO_DATE
                ),
                "last_order_date": self.maybe(0.6, lambda: self.day(self.start, self.end)),
                "signup_at": self.moment(past, created) if self.chance(0.9) else ZERO_DATETIME,
                "last_login_at": self.moment(created, self.end) if self.chance(0.65) else "",
                "account_ref": self.maybe(0.5, lambda: str(self.rng.randint(1, 10_000)), "0"),
            }
            interests = [i for i in ("news", "offers", "events") if self.rng.random() < 0.4]
            profile_id = self.store.insert_profile(
                database,
                values,
                interests,
                secret=self.secret(),
                created=self.stamp(created),
                modified=self.stamp(line.later(created, 0.45)),
            )
            for _ in range(self.rng.randint(0, 3)):
                self.subprofile(
                    profile_id,
                    orders,
                    created,
                    sub_line,
                    {
                        "order_id": f"ORD-{self.digits(6)}",
                        "amount": format_float(round(self.rng.uniform(5, 500), 2)),
                        "ordered_at": self.stamp(self.rng.randint(created, self.end)),
                        "quantity": str(self.rng.randint(1, 10)),
                    },
                )
            for _ in range(self.rng.randint(0, 2)):
                self.subprofile(
                    profile_id,
                    tickets,
                    created,
                    sub_line,
                    {
                        "subject": self.rng.choice(SUBJECTS),
                        "status": self.rng.choice(("open", "closed")),
                        "opened_on": self.day(created, self.end),
                    },
                )

    def subprofile(
        self,
        profile_id: int,
        collection: int,
        parent_created: int,
        line: Timeline,
        values: dict[str, str],
    ) -> None:
        created = line.later(parent_created, 0.3)
        self.store.insert_subprofile(
            profile_id,
            collection,
            values,
            secret=self.secret(),
            created=self.stamp(created),
            modified=self.stamp(line.later(created, 0.5)),
        )

    def newsletter(self, database: int) -> None:
        line = Timeline(self.rng, self.start, self.end, self.profiles // 2)
        for n, created in enumerate(line.created, start=1):
            first, last, email = self.person(n)
            values = {
                "email": email,
                "name": f"{first} {last}",
                "optin": self.maybe(0.9, lambda: self.rng.choice(("yes", "no"))),
                "signup": self.stamp(created)[:10] if self.chance(0.8) else ZERO_DATE,
            }
            interests = ["weekly"] if self.rng.random() < 0.5 else []
            self.store.insert_profile(
                database,
                values,
                interests,
                secret=self.secret(),
                created=self.stamp(created),
                modified=self.stamp(line.later(created, 0.5)),
            )

    def legacy(self, database: int, notes: int) -> None:
        line = Timeline(self.rng, self.start, self.end, self.profiles // 4)
        for n, created in enumerate(line.created, start=1):
            values = {
                "modified": self.rng.choice(("manual", "import", "api", "sync", "")),
                "email": self.person(n)[2],
                "code_value": f"LEG-{self.digits(5)}",
            }
            profile_id = self.store.insert_profile(
                database,
                values,
                [],
                secret=self.secret(),
                created=self.stamp(created),
                modified=self.stamp(line.later(created, 0.5)),
            )
            for _ in range(self.rng.randint(0, 2)):
                self.subprofile(
                    profile_id,
                    notes,
                    created,
                    line,
                    {
                        "note": self.rng.choice(NOTES),
                        "noted_at": self.stamp(self.rng.randint(created, self.end)),
                    },
                )


def populate(store: Store, *, seed: int, profiles_per_database: int, anchor: float) -> None:
    """Fill an empty store; the same arguments always give the same data."""
    Seeder(store, seed, profiles_per_database, anchor).run()
    seed_structure(store)
    mailings.seed(store, seed=seed, anchor=anchor)
