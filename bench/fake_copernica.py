"""A stripped, precomputed Copernica REST v4 server for benchmarks (stdlib and the emulator).

Why not ``copernica_emulator``: it renders every profile per request and filters with a scan of
the whole store under one lock, so at 200,000 profiles the server, not the tap, would be
measured (and seeding alone takes ~4 s per 20,000 profiles). This server builds each
profile's JSON bytes once and answers a page with two bisects and one ``join``.

What it serves (the shapes the emulator and Copernica use):

- ``POST /authenticate`` -> a JWT (text) with a far ``exp``; any token is accepted.
- ``GET /v4/identity``, ``/v4/databases``, ``/v4/database/{id|name}``,
  ``/v4/database/{id}/fields``, ``/interests``, ``/collections`` (none).
- ``GET /v4/database/{id}/profiles`` with ``fields[]`` filters on ``id`` and ``modified``
  (``> >= < <= == !=``), ``orderby`` (``id`` or ``modified``, ties by ID), ``order``,
  ``start``, ``limit`` (at most 1000) and ``total``. Rows are exact: a keyset or ID-range
  query returns precisely the rows in range, so a client that pages wrongly is caught.
- Writes into the database called ``Bench`` (empty at start): ``PUT .../profiles`` with
  ``fields[]=<key>==<value>`` and ``create=1``, ``POST .../profiles``, ``POST /v4/imports``
  (finished at once) and ``GET /v4/import/{id}``.
- Control: ``GET /_bench/info`` (databases, row counts, ID sums), ``GET /_bench/stats``
  (requests by kind), ``POST /_bench/reset`` (stats and the Bench database),
  ``POST /_bench/latency?ms=N`` (sleep N ms in the handler thread of every later request).

Databases: 1 ``Customers`` (``--n`` profiles), 2 ``Small`` (``--small-n`` profiles, for runs
under latency), 3 ``Bench`` (write target), 4 ``Empty``. IDs are one ascending space with
small gaps, as in Copernica, where databases share the profile ID sequence.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import gc
import itertools
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from copernica_emulator.filters import ORDERINGS
from copernica_emulator.seed import CUSTOMER_FIELDS

MAX_LIMIT = 1000
#: The same fields as the emulator's Customers database.
FIELDS = CUSTOMER_FIELDS
BENCH_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("email", "email", ""),
    ("firstname", "text", ""),
    ("lastname", "text", ""),
    ("city", "text", ""),
    ("age", "integer", "0"),
)
INTERESTS = ("news", "offers", "events")
FIRST = ("Anna", "Bram", "Carla", "Daan", "Eva", "Floor", "Gijs", "Hanna", "Ivo", "Julia")
LAST = ("Jansen", "de Vries", "van Dijk", "Bakker", "Visser", "Smit", "Meijer", "de Boer")
CITIES = ("Amsterdam", "Rotterdam", "Utrecht", "Den Haag", "Eindhoven", "Groningen", "")
NOTES = ("", "", "Prefers e-mail", "VIP since launch", "Ünïcode ✓")
T0 = 1_700_000_000  # a fixed epoch: pages are identical in every run
NUMERIC_OPS = ("==", "!=", "<>", "<=", ">=", "<", ">")


def stamp(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


@dataclass
class Database:
    id: int
    name: str
    fields: tuple[tuple[str, str, str], ...]
    ids: list[int] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)
    by_modified: list[int] | None = None  # row indexes ordered by (modified, ID), built lazily
    keys: dict[tuple[str, ...], int] = field(default_factory=dict)  # writes: key -> ID
    values: dict[int, dict[str, str]] = field(default_factory=dict)  # writes: ID -> fields

    def field_json(self) -> list[dict[str, Any]]:
        return [
            {
                "ID": str(number),
                "name": name,
                "type": ftype,
                "value": value,
                "displayed": True,
                "ordered": False,
                "length": "255",
                "textlines": "0",
                "hidden": False,
                "index": name == "email",
            }
            for number, (name, ftype, value) in enumerate(self.fields, start=self.id * 100)
        ]

    def interest_json(self) -> list[dict[str, Any]]:
        if self.name != "Customers" and self.name != "Small":
            return []
        return [
            {"ID": str(self.id * 10 + n), "name": name, "group": "mail"}
            for n, name in enumerate(INTERESTS)
        ]

    def info(self) -> dict[str, Any]:
        return {
            "ID": str(self.id),
            "name": self.name,
            "description": f"benchmark database {self.name}",
            "archived": False,
            "created": stamp(T0 - 86400 * 400),
            "fields": wrapped(self.field_json()),
            "interests": wrapped(self.interest_json()),
            "collections": wrapped([]),
        }


def wrapped(items: list[Any], start: int = 0, limit: int = MAX_LIMIT) -> dict[str, Any]:
    data = items[start : start + limit] if start >= 0 and limit > 0 else []
    return {"start": start, "limit": limit, "count": len(data), "total": len(items), "data": data}


def seed_profiles(db: Database, count: int, first_id: int, rng: random.Random) -> int:
    """Append `count` profiles to `db`, IDs ascending from `first_id` with gaps; next free ID."""
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    pid = first_id
    created = T0 - 86400 * 400
    for n in range(count):
        pid += 1 if rng.random() < 0.9 else rng.randint(2, 6)
        created += rng.randint(0, 120)
        modified = created + (0 if rng.random() < 0.4 else rng.randint(0, 86400 * 300))
        first, last = FIRST[pid % len(FIRST)], LAST[(pid // 7) % len(LAST)]
        values = {
            "firstname": first,
            "lastname": last,
            "city": CITIES[pid % len(CITIES)],
            "email": f"{first}.{last.replace(' ', '')}{pid}@example.com".lower(),
            "mobile": f"+316{pid % 100_000_000:08d}" if n % 4 else "",
            "fax": f"+3120{pid % 10_000_000:07d}" if n % 3 == 0 else "",
            "segment": ("gold", "silver", "bronze", "")[n % 4],
            "notes": NOTES[n % len(NOTES)],
            "age": str(18 + n % 70),
            "loyalty_points": str(rng.randint(0, 5000)),
            "score": f"{rng.uniform(0, 100):.2f}".rstrip("0").rstrip("."),
            "birthdate": "0000-00-00"
            if n % 7 == 0
            else stamp(T0 - 86400 * (7000 + n % 15000))[:10],
            "last_order_date": "" if n % 5 == 0 else stamp(modified)[:10],
            "signup_at": stamp(created - 86400 * (n % 900)),
            "last_login_at": "" if n % 3 == 0 else stamp(modified),
            "account_ref": str(n % 10_000),
        }
        row = {
            "ID": str(pid),
            "fields": values,
            "interests": [i for k, i in enumerate(INTERESTS) if (pid >> k) & 1],
            "database": str(db.id),
            "secret": f"{rng.getrandbits(128):032x}",
            "created": stamp(created),
            "modified": stamp(modified),
            "removed": False,
        }
        db.ids.append(pid)
        db.modified.append(stamp(modified))
        db.rows.append(dumps(row).encode())
    return pid


@dataclass(frozen=True)
class Condition:
    name: str  # "id" or "modified" or a field name (Bench database only)
    op: str
    value: str

    @property
    def operand(self) -> Any:
        """The right-hand side as the column holds it (IDs are integers)."""
        if self.name != "id":
            return self.value
        try:
            return int(self.value)
        except ValueError:
            return 0

    def test(self, left: Any) -> bool:
        return bool(COMPARE[self.op](left, self.operand))


#: The comparisons of `fields[]` filters, as the emulator makes them.
COMPARE = ORDERINGS


def parse_condition(expression: str) -> Condition | None:
    for position in range(len(expression)):
        for op in NUMERIC_OPS:
            if expression.startswith(op, position):
                return Condition(
                    expression[:position].strip().lower(), op, expression[position + len(op) :]
                )
    return None


class Server:
    """The data and counters; request handling lives in `Handler`."""

    def __init__(self, n: int, small_n: int, seed: int) -> None:
        rng = random.Random(seed)
        self.dbs: dict[int, Database] = {
            1: Database(1, "Customers", FIELDS),
            2: Database(2, "Small", FIELDS),
            3: Database(3, "Bench", BENCH_FIELDS),
            4: Database(4, "Empty", FIELDS),
        }
        last = seed_profiles(self.dbs[1], n, 0, rng)
        last = seed_profiles(self.dbs[2], small_n, last, rng)
        self.next_id = last + 1000
        self.latency = 0.0
        self.lock = threading.Lock()
        self.stats: dict[str, int] = {}
        self.imports: dict[int, int] = {}  # import ID -> rows
        self.running: dict[int, threading.Thread] = {}  # import ID -> its worker
        self.jwt = self._jwt()

    @staticmethod
    def _jwt() -> str:
        def part(obj: dict[str, Any]) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        now = int(time.time())
        head = part({"alg": "HS256", "typ": "JWT"})
        return f"{head}.{part({'iat': now, 'exp': now + 86400, 'jti': 1})}.c2lnbmF0dXJl"

    def count(self, kind: str, amount: int = 1) -> None:
        with self.lock:
            self.stats[kind] = self.stats.get(kind, 0) + amount

    def database(self, ref: str) -> Database | None:
        for db in self.dbs.values():
            if ref == str(db.id) or ref.casefold() == db.name.casefold():
                return db
        return None

    # -- reads ---------------------------------------------------------------------------
    def profile_page(self, db: Database, query: list[tuple[str, str]]) -> bytes:
        params = dict(query)
        conditions = [
            c for e in (v for k, v in query if k == "fields[]") if (c := parse_condition(e))
        ]
        start = int(params.get("start", "0") or 0)
        limit = min(int(params.get("limit", "100") or 100), MAX_LIMIT)
        total = params.get("total", "true").lower() not in ("false", "0", "no")
        orderby = params.get("orderby", "id").lower()
        descending = params.get("order", "asc").lower() == "desc"
        if db.name == "Bench":
            return self._bench_page(db, conditions, start, limit, total)
        # Index window from the ID conditions (exact: bisect on the sorted ID list).
        low, high = 0, len(db.ids)
        rest: list[Condition] = []
        for c in conditions:
            if c.name != "id" or c.op in ("!=", "<>"):
                rest.append(c)
                continue
            value = int(c.value) if c.value.lstrip("-").isdigit() else 0
            if c.op in (">", ">="):
                low = max(
                    low, (bisect.bisect_right if c.op == ">" else bisect.bisect_left)(db.ids, value)
                )
            elif c.op in ("<", "<="):
                high = min(
                    high,
                    (bisect.bisect_left if c.op == "<" else bisect.bisect_right)(db.ids, value),
                )
            else:  # ==
                at = bisect.bisect_left(db.ids, value)
                hit = at < len(db.ids) and db.ids[at] == value
                low, high = max(low, at), min(high, at + 1 if hit else at)
        if not rest and orderby != "modified":
            matched = max(0, high - low)
            if start < 0 or limit <= 0:
                chosen: list[bytes] = []
            elif descending:
                top = high - start
                chosen = db.rows[max(low, top - limit) : max(low, top)][::-1]
            else:
                chosen = db.rows[low + start : min(high, low + start + limit)]
        else:  # the general path: filter, order by (modified, ID) or ID
            tests = [
                (db.ids if c.name == "id" else db.modified, COMPARE[c.op], c.operand)
                for c in rest
                if c.name in ("id", "modified")
            ]

            def passes(i: int) -> bool:
                return all(compare(column[i], operand) for column, compare, operand in tests)

            window: list[int] | itertools.islice[int]
            if orderby == "modified":
                keep = [i for i in range(low, high) if passes(i)]
                keep.sort(key=lambda i: (db.modified[i], db.ids[i]))
                if descending:
                    keep.reverse()
                matched = len(keep)
                window = keep[start : start + limit] if start >= 0 and limit > 0 else []
            else:
                # In ID order a page needs only its first start + limit matches (as an index
                # would give them); the whole range is scanned only when `total` is asked.
                order = range(high - 1, low - 1, -1) if descending else range(low, high)
                hits = (i for i in order if passes(i))
                if total:
                    keep = list(hits)
                    matched = len(keep)
                    window = keep[start : start + limit] if start >= 0 and limit > 0 else []
                else:
                    matched = 0
                    window = (
                        itertools.islice(hits, start, start + limit)
                        if start >= 0 and limit > 0
                        else []
                    )
            chosen = [db.rows[i] for i in window]
        head = f'{{"start":{start},"limit":{limit},"count":{len(chosen)},'
        if total:
            head += f'"total":{matched},'
        return head.encode() + b'"data":[' + b",".join(chosen) + b"]}"

    def _bench_page(
        self, db: Database, conditions: list[Condition], start: int, limit: int, total: bool
    ) -> bytes:
        """Profiles written by the target (small or key lookups): a plain filter."""
        with self.lock:
            items = sorted(db.values.items())
        keep = []
        for pid, values in items:
            ok = all(
                c.test(pid) if c.name == "id" else c.test(values.get(c.name, ""))
                for c in conditions
            )
            if ok:
                keep.append(
                    {
                        "ID": str(pid),
                        "fields": values,
                        "interests": [],
                        "database": str(db.id),
                        "secret": "",
                        "created": "",
                        "modified": "",
                        "removed": False,
                    }
                )
        body: dict[str, Any] = {"start": start, "limit": limit}
        data = keep[start : start + limit]
        body["count"] = len(data)
        if total:
            body["total"] = len(keep)
        body["data"] = data
        return json.dumps(body).encode()

    # -- writes --------------------------------------------------------------------------
    def upsert(
        self, db: Database, query: list[tuple[str, str]], body: bytes, *, create: bool
    ) -> tuple[int, int]:
        """(status, created ID or 0). Key conditions `name==value` select the profile."""
        payload = json.loads(body or b"{}")
        values = payload.get("fields", payload) if isinstance(payload, dict) else {}
        values = (
            {str(k): "" if v is None else str(v) for k, v in values.items()}
            if isinstance(values, dict)
            else {}
        )
        conditions = [
            c for e in (v for k, v in query if k == "fields[]") if (c := parse_condition(e))
        ]
        key = tuple(f"{c.name}={c.value}" for c in conditions if c.op == "==")
        with self.lock:
            found = db.keys.get(key) if key else None
            if found is not None:
                db.values[found].update(values)
                return 204, 0
            if not create and key:
                return 204, 0
            self.next_id += 1
            pid = self.next_id
            db.values[pid] = values
            if key:
                db.keys[key] = pid
            return 201, pid

    def import_rows(self, body: bytes) -> tuple[int, int]:
        """Accept an import and apply it in the background, as Copernica runs imports
        asynchronously (restv4/rest-post-imports.md); `GET /import/{id}` says when it ended."""
        payload = json.loads(body or b"{}")
        source = payload.get("source", [])
        rows = json.loads(source) if isinstance(source, str) else source
        with self.lock:
            self.stats["import rows"] = self.stats.get("import rows", 0) + len(rows)
            import_id = len(self.imports) + 1
            self.imports[import_id] = len(rows)
            self.running[import_id] = threading.Thread(
                target=self._apply_import, args=(payload, rows), daemon=True
            )
            self.running[import_id].start()
        return import_id, len(rows)

    def import_ended(self, import_id: int) -> bool:
        thread = self.running.get(import_id)
        return thread is None or not thread.is_alive()

    def _apply_import(self, payload: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        db = self.database(str(payload.get("database", ""))) or self.dbs[3]
        key_fields = [str(k).lower() for k in payload.get("keyFields") or []]
        with self.lock:
            for row in rows:
                values = {str(k): "" if v is None else str(v) for k, v in row.items()}
                key = tuple(f"{k}={values.get(k, '')}" for k in key_fields)
                pid = db.keys.get(key) if key else None
                if pid is None:
                    self.next_id += 1
                    pid = self.next_id
                    db.values[pid] = values
                    if key:
                        db.keys[key] = pid
                else:
                    db.values[pid].update(values)

    def reset(self) -> None:
        with self.lock:
            self.stats.clear()
            self.imports.clear()
            self.running.clear()
            bench = self.dbs[3]
            bench.keys.clear()
            bench.values.clear()

    def summary(self) -> dict[str, Any]:
        return {
            "databases": {
                str(db.id): {
                    "name": db.name,
                    "rows": len(db.ids),
                    "id_sum": sum(db.ids),
                    "written": len(db.values),
                }
                for db in self.dbs.values()
            }
        }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_state: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self,
        code: int,
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
        ctype: str = "application/json",
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, obj: Any, code: int = 200) -> None:
        self._send(code, json.dumps(obj).encode())

    def _error(self, message: str, code: int = 400) -> None:
        self._json({"error": {"message": message}}, code)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self, method: str) -> None:
        state = self.server_state
        body = self._body() if method in ("POST", "PUT") else b""
        url = urlsplit(self.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if parts[:1] == ["_bench"]:
            self._control(method, parts[1:], dict(query))
            return
        if state.latency:
            time.sleep(state.latency)
        if parts == ["authenticate"]:
            state.count("auth")
            self._send(200, state.jwt.encode(), ctype="text/plain")
            return
        if parts[:1] != ["v4"] or len(parts) < 2:
            self._error("Invalid method", 404)
            return
        head, tail = parts[1], parts[2:]
        kind = f"{method} {head}" + (f"/{tail[1]}" if len(tail) > 1 else "")
        state.count(kind)
        if method == "GET" and head == "identity":
            self._json(
                {"ID": "1", "name": "bench", "description": "benchmark", "company": "Bench B.V."}
            )
        elif method == "GET" and head == "databases":
            start = int(dict(query).get("start", "0") or 0)
            self._json(wrapped([db.info() for db in state.dbs.values()], start))
        elif head == "database" and tail:
            self._database(method, tail, query, body)
        elif method == "POST" and head == "imports":
            import_id, _ = state.import_rows(body)
            location = f"http://{self.headers.get('Host')}/v4/import/{import_id}"
            self._send(201, headers=(("X-location", location), ("X-Created", str(import_id))))
        elif method == "GET" and head == "import" and tail:
            import_id = int(tail[0]) if tail[0].isdigit() else 0
            lines = state.imports.get(import_id)
            if lines is None:
                self._error("No import with supplied ID")
                return
            ended = state.import_ended(import_id)
            self._json(
                {
                    "ID": str(import_id),
                    "name": "",
                    "type": "update or add",
                    "status": "finished" if ended else "running",
                    "totallines": str(lines),
                    "processedlines": str(lines if ended else 0),
                    "lastrun": stamp(int(time.time())),
                    "nextrun": False,
                    "lasterror": False,
                }
            )
        else:
            self._error("Invalid method", 400)

    def _database(
        self, method: str, tail: list[str], query: list[tuple[str, str]], body: bytes
    ) -> None:
        state = self.server_state
        db = state.database(tail[0])
        if db is None:
            self._error("No database with supplied ID")
            return
        part = tail[1] if len(tail) > 1 else None
        if method == "GET":
            start = int(dict(query).get("start", "0") or 0)
            if part is None:
                self._json(db.info())
            elif part == "fields":
                self._json(wrapped(db.field_json(), start))
            elif part == "interests":
                self._json(wrapped(db.interest_json(), start))
            elif part == "collections":
                self._json(wrapped([], start))
            elif part == "profiles":
                self._send(200, state.profile_page(db, query))
            else:
                self._error("Invalid method")
            return
        if part == "profiles" and method in ("PUT", "POST"):
            create = method == "POST" or dict(query).get("create", "") in ("1", "true", "yes")
            status, pid = state.upsert(db, query if method == "PUT" else [], body, create=create)
            state.count("written rows")
            if pid:
                location = f"http://{self.headers.get('Host')}/v4/profile/{pid}"
                self._send(201, headers=(("X-location", location), ("X-Created", str(pid))))
            else:
                self._send(status)
            return
        self._error("Invalid method")

    def _control(self, method: str, parts: list[str], params: dict[str, str]) -> None:
        state = self.server_state
        if parts == ["info"]:
            self._json(state.summary())
        elif parts == ["stats"]:
            with state.lock:
                self._json(dict(state.stats))
        elif parts == ["reset"] and method == "POST":
            state.reset()
            self._json({"ok": True})
        elif parts == ["latency"] and method == "POST":
            state.latency = float(params.get("ms", "0")) / 1000
            self._json({"latency_ms": state.latency * 1000})
        else:
            self._error("unknown control", 404)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")


def serve(n: int, small_n: int, port: int, seed: int = 7) -> ThreadingHTTPServer:
    """Build the data and bind; the caller runs `serve_forever`."""
    state = Server(n, small_n, seed)
    # The precomputed data lives as long as the server: keep the collector's passes, which
    # the dictionaries of each import would trigger, off it (the server is not what is
    # measured).
    gc.freeze()
    handler = type("BoundHandler", (Handler,), {"server_state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    return httpd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=200_000, help="profiles in database 1")
    parser.add_argument("--small-n", type=int, default=20_000, help="profiles in database 2")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    httpd = serve(args.n, args.small_n, args.port, args.seed)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    print(
        json.dumps(
            {
                "api_url": f"{base}/v4",
                "auth_url": f"{base}/authenticate",
                "api_token": "bench-token",
                "seed_seconds": round(time.perf_counter() - began, 2),
            }
        )
    )
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
