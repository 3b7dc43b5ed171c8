"""``copernica-emulator``: run the Copernica emulator, and change its data while it runs.

    copernica-emulator serve --port 8765 --profiles 10000 [--seed N] [--host 127.0.0.1]
    copernica-emulator status [--wait SECONDS]
    copernica-emulator delete-profile 7 [8 ...]
    copernica-emulator modify-profile 7 [8 ...] --set firstname=Anna [--set city=Delft]
    copernica-emulator insert-profiles 100 [--database Customers]
    copernica-emulator add-events 50 [--kind clicks] [--product ms] [--emailing ID]
    copernica-emulator add-field --database Customers --name loyalty --type integer

The data commands find the running emulator from ``--url`` or ``COPERNICA_EMULATOR_URL``
(default http://127.0.0.1:8765) and authenticate with ``--token`` or
``COPERNICA_EMULATOR_TOKEN`` (``serve`` prints both). They change data through the public
REST API, as a client would; only events, which the API cannot create, go through the
emulator's own ``/_emulator/events``. Each prints one line saying what changed; a bad argument
or an unreachable server ends it with one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any, NoReturn

from . import fieldtypes, mailings
from .emulator import Emulator

PROG = "copernica-emulator"
DEFAULT_PORT = 8765
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
URL_ENV = "COPERNICA_EMULATOR_URL"
TOKEN_ENV = "COPERNICA_EMULATOR_TOKEN"
#: The API token of an emulator started with the default seed (42).
DEFAULT_TOKEN = "emulator-api-token-42"
PLUGIN_PREFIXES = ("TAP_COPERNICA", "TARGET_COPERNICA")
COMMANDS = (
    "serve",
    "status",
    "delete-profile",
    "modify-profile",
    "insert-profiles",
    "add-events",
    "add-field",
)
FIRST_NAMES = ("Anna", "Bram", "Chloe", "Daan", "Emma", "Finn", "Julia", "Lars", "Noor", "Sem")
LAST_NAMES = ("de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "Mulder", "Bos")


class CliError(Exception):
    """Ends the command with this one line on stderr (exit code 1)."""


class Parser(argparse.ArgumentParser):
    """Reports a bad argument in one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------------- serve
def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def settings_lines(emulator: Emulator) -> list[str]:
    """What `serve` prints: comments, then `export` lines a shell can source as they are."""
    values = {"API_URL": emulator.api_url, "AUTH_URL": emulator.auth_url}
    values["API_TOKEN"] = emulator.api_token
    lines = [
        f"# Copernica emulator on {emulator.base_url} (seed {emulator.seed}); stop it with "
        "Ctrl-C or kill.",
    ]
    for prefix in PLUGIN_PREFIXES:
        lines += [f"export {prefix}_{name}={value}" for name, value in values.items()]
    lines += [
        "# for the copernica-emulator data commands (delete-profile, add-events, ...):",
        f"export {URL_ENV}={emulator.base_url}",
        f"export {TOKEN_ENV}={emulator.api_token}",
    ]
    return lines


def exposure_warning(host: str) -> str:
    return (
        f"WARNING: {PROG} is listening on {host or 'every interface'}, which is not a loopback "
        "address.\nWARNING: it is a test server that accepts writes with a well-known token: "
        "anyone who can reach this\nWARNING: machine can read and change its data. Do not "
        "expose it on a shared network; use --host 127.0.0.1.\n"
    )


def serve(args: argparse.Namespace) -> int:
    emulator = Emulator(
        seed=args.seed,
        profiles_per_database=args.profiles,
        host=args.host,
        port=args.port,
        timezone=args.timezone,
    )
    loopback = is_loopback(args.host)
    if not loopback:
        sys.stderr.write(exposure_warning(args.host))
        sys.stderr.flush()
    stopped = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        # Requests wait for the store's lock: none is answered before the settings are out, so
        # `status --wait` returning means the printed settings can be read.
        with emulator.store.lock:
            emulator.start()
            where = "loopback only" if loopback else "NOT loopback: reachable from the network"
            print(
                f"# listening on {args.host}:{emulator.port} ({where}): a test server that "
                "accepts writes, not something to expose on a shared network."
            )
            print("\n".join(settings_lines(emulator)), flush=True)
    except OSError as error:
        raise CliError(
            f"cannot listen on {args.host}:{args.port}: {error.strerror or error}"
        ) from None
    while not stopped.wait(0.5):
        pass
    emulator.stop()
    return 0


# ---------------------------------------------------------------------------------- client
class Client:
    """The public REST API of a running emulator, authenticated like any client."""

    def __init__(self, url: str, token: str, timeout: float = 30) -> None:
        base = url.rstrip("/")
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise CliError(f"--url {url!r}: expected http://HOST:PORT, e.g. {DEFAULT_URL}")
        self.base_url = base.removesuffix("/v4")
        self.token = token
        self.timeout = timeout
        self._jwt: str | None = None

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked: http or https)
            self.base_url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                return reply.status, dict(reply.headers), reply.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(
                f"cannot reach the emulator at {self.base_url} ({reason}); start it with "
                f"`{PROG} serve`, or point --url or {URL_ENV} at it"
            ) from None

    def check_emulator(self) -> dict[str, Any]:
        """The emulator's status; refuses anything that is not the emulator (no writes to a
        real account by mistake)."""
        status, _, body = self._send("GET", "/_emulator/status")
        payload = _json(body)
        if status != 200 or not isinstance(payload, dict) or payload.get("emulator") != "copernica":
            raise CliError(
                f"{self.base_url} does not answer as a Copernica emulator (HTTP {status})"
            )
        return payload

    def jwt(self) -> str:
        if self._jwt is None:
            self.check_emulator()  # never send a token or a write anywhere but the emulator
            form = urllib.parse.urlencode({"access_token": self.token}).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            status, _, body = self._send("POST", "/authenticate", form, headers)
            if status != 200:
                raise CliError(
                    f"the emulator refused the API token ({_message(body)}); pass the one "
                    f"`{PROG} serve` printed with --token or {TOKEN_ENV}"
                )
            payload = _json(body)
            text = body.decode().strip()
            self._jwt = str(payload["access_token"]) if isinstance(payload, dict) else text
        return self._jwt

    def call(
        self, method: str, path: str, payload: Any = None, query: dict[str, Any] | None = None
    ) -> tuple[dict[str, str], Any]:
        """One authenticated request; an error answer ends the command with its message."""
        headers = {"Authorization": f"Bearer {self.jwt()}"}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        status, reply_headers, reply = self._send(method, path, body, headers)
        if status >= 400:
            raise CliError(f"{method} {path.partition('?')[0]}: {_message(reply)}")
        return reply_headers, _json(reply)

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, query=query)[1]

    def database(self, ref: str) -> dict[str, Any]:
        """A database by ID or name (case-insensitive)."""
        databases = self.get("/v4/databases", limit=1000)["data"]
        for db in databases:
            if ref == str(db["ID"]) or ref.casefold() == str(db["name"]).casefold():
                return dict(db)
        known = ", ".join(f"{db['name']} ({db['ID']})" for db in databases)
        raise CliError(f"no database {ref!r} (databases: {known})")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _message(body: bytes) -> str:
    payload = _json(body)
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message", payload))
    return body.decode("utf-8", "replace").strip()[:200] or "no answer"


def id_ranges(ids: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    parts: list[str] = []
    run: list[int] = []
    for value in sorted(ids):
        if run and value == run[-1] + 1:
            run.append(value)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [value]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(parts)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# -------------------------------------------------------------------------- data commands
def status_command(client: Client, args: argparse.Namespace) -> str:
    deadline = time.monotonic() + args.wait
    while True:
        try:
            status = client.check_emulator()
            break
        except CliError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
    counts = ", ".join(f"{db['name']} {db['profiles']}" for db in status["databases"])
    return f"emulator at {client.base_url} is up, server time {status['now']}; profiles: {counts}"


def delete_profile(client: Client, args: argparse.Namespace) -> str:
    deleted: list[int] = []
    for profile_id in args.ids:
        try:
            client.call("DELETE", f"/v4/profile/{profile_id}")
        except CliError as error:
            done = f" (deleted before it: {id_ranges(deleted)})" if deleted else ""
            raise CliError(f"profile {profile_id}: {error}{done}") from None
        deleted.append(profile_id)
    return f"deleted {'profiles' if len(deleted) > 1 else 'profile'} {id_ranges(deleted)}"


def _assignments(pairs: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--set {pair!r}: expected NAME=VALUE, e.g. --set firstname=Anna")
        values[name.strip()] = value
    return values


def modify_profile(client: Client, args: argparse.Namespace) -> str:
    values = _assignments(args.set)
    changed: list[str] = []
    unchanged: list[int] = []
    for profile_id in args.ids:
        before = client.get(f"/v4/profile/{profile_id}")
        if before.get("removed"):
            raise CliError(f"profile {profile_id} was removed at {before['removed']}")
        names = {name.casefold(): name for name in before["fields"]}
        unknown = [name for name in values if name.casefold() not in names]
        if unknown:
            raise CliError(
                f"profile {profile_id} has no field {unknown[0]!r} "
                f"(its fields: {', '.join(before['fields'])})"
            )
        client.call("PUT", f"/v4/profile/{profile_id}/fields", values)
        after = client.get(f"/v4/profile/{profile_id}")
        if after["modified"] == before["modified"]:
            unchanged.append(profile_id)
        else:
            changed.append(f"{profile_id} ({before['modified']} -> {after['modified']})")
    assigned = ", ".join(f"{name}={value}" for name, value in values.items())
    line = f"set {assigned} on profile{'s' if len(args.ids) > 1 else ''} {id_ranges(args.ids)}"
    if changed:
        line += f"; modified moved: {', '.join(changed)}"
    if unchanged:
        line += f"; already had these values (modified kept): {id_ranges(unchanged)}"
    return line


def _new_values(fields: list[dict[str, Any]], rng: random.Random, tag: str) -> dict[str, str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    values: dict[str, str] = {}
    for field in fields:
        name, kind = str(field["name"]), str(field["type"])
        if kind == "email":
            values[name] = f"{first.lower()}.{tag}@example.com"
        elif kind == "text" and name.casefold() in ("firstname", "first_name"):
            values[name] = first
        elif kind == "text" and name.casefold() in ("lastname", "last_name"):
            values[name] = last
        elif kind == "text" and name.casefold() == "name":
            values[name] = f"{first} {last}"
    return values


def insert_profiles(client: Client, args: argparse.Namespace) -> str:
    db = client.database(args.database)
    fields = client.get(f"/v4/database/{db['ID']}/fields", limit=1000)["data"]
    rng = random.Random()
    batch = f"{rng.getrandbits(24):06x}"
    created: list[int] = []
    for number in range(1, args.count + 1):
        values = _new_values(fields, rng, f"{batch}{number}")
        headers, _ = client.call("POST", f"/v4/database/{db['ID']}/profiles", {"fields": values})
        new_id = {k.lower(): v for k, v in headers.items()}.get("x-created")
        if new_id is None:
            raise CliError("the emulator created a profile but sent no X-Created header")
        created.append(int(new_id))
    return (
        f"inserted {_plural(len(created), 'profile')} into database {db['name']} ({db['ID']}): "
        f"IDs {id_ranges(created)}"
    )


def add_events(client: Client, args: argparse.Namespace) -> str:
    request: dict[str, Any] = {"count": args.count, "kind": args.kind, "product": args.product}
    if args.emailing is not None:
        request["emailing"] = args.emailing
    _, answer = client.call("POST", "/_emulator/events", request)
    emailings = ", ".join(str(e) for e in answer["emailings"])
    return (
        f"added {args.count} {args.product} {args.kind} stamped {answer['timestamp']} on "
        f"emailing{'s' if len(answer['emailings']) > 1 else ''} {emailings}: "
        f"event IDs {id_ranges(answer['ids'])} (stream {args.product}_{args.kind})"
    )


def add_field(client: Client, args: argparse.Namespace) -> str:
    db = client.database(args.database)
    owner, path = f"database {db['name']} ({db['ID']})", f"/v4/database/{db['ID']}/fields"
    if args.collection is not None:
        collections = client.get(f"/v4/database/{db['ID']}/collections", limit=1000)["data"]
        match = [
            c
            for c in collections
            if args.collection in (str(c["ID"]),)
            or args.collection.casefold() == c["name"].casefold()
        ]
        if not match:
            known = ", ".join(f"{c['name']} ({c['ID']})" for c in collections) or "none"
            raise CliError(f"database {db['name']} has no collection {args.collection!r} ({known})")
        owner = f"collection {match[0]['name']} ({match[0]['ID']})"
        path = f"/v4/collection/{match[0]['ID']}/fields"
    body = {"name": args.name, "type": args.type, "value": args.default}
    headers, _ = client.call("POST", path, body)
    field_id = {k.lower(): v for k, v in headers.items()}.get("x-created", "?")
    return f"added field {args.name} ({args.type}) to {owner}: field ID {field_id}"


# -------------------------------------------------------------------------------- parsing
def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535; 0 picks one)")
    return value


def _count(text: str) -> int:
    value = _positive(text)
    if value > 1_000_000:
        raise argparse.ArgumentTypeError(f"{value} is too many (at most 1000000)")
    return value


Command = Callable[[Client, argparse.Namespace], str]


def parser() -> Parser:
    top = Parser(
        prog=PROG,
        description="Run the Copernica REST v4 emulator and change its data while it runs.",
        epilog=f"Data commands: --url or {URL_ENV} (default {DEFAULT_URL}), --token or "
        f"{TOKEN_ENV}; `serve` prints both.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, run: Command | None = None) -> Parser:
        sub: Parser = commands.add_parser(name, help=text, description=text)
        if run is not None:
            sub.set_defaults(run=run)
            sub.add_argument(
                "--url",
                default=os.environ.get(URL_ENV) or DEFAULT_URL,
                help=f"the running emulator (default ${URL_ENV} or {DEFAULT_URL})",
            )
            sub.add_argument(
                "--token",
                default=os.environ.get(TOKEN_ENV) or DEFAULT_TOKEN,
                help=f"its API token (default ${TOKEN_ENV}, else seed 42's)",
            )
        return sub

    serve_parser = command("serve", "serve seeded demo data until stopped (Ctrl-C, SIGTERM)")
    serve_parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, loopback only)",
    )
    serve_parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="0 picks a free one")
    serve_parser.add_argument("--profiles", type=_count, default=200, help="per database")
    serve_parser.add_argument("--seed", type=int, default=42, help="same seed, same data")
    serve_parser.add_argument("--timezone", default="Europe/Amsterdam")

    status = command("status", "check that the emulator answers", status_command)
    status.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="keep trying this long while it does not answer yet",
    )

    delete = command("delete-profile", "delete profiles (DELETE /v4/profile/{id})", delete_profile)
    delete.add_argument("ids", type=_positive, nargs="+", metavar="ID")

    modify = command(
        "modify-profile", "change profile fields (PUT /v4/profile/{id}/fields)", modify_profile
    )
    modify.add_argument("ids", type=_positive, nargs="+", metavar="ID")
    modify.add_argument(
        "--set",
        action="append",
        required=True,
        metavar="NAME=VALUE",
        help="a field value (repeatable)",
    )

    insert = command(
        "insert-profiles", "create profiles (POST /v4/database/{id}/profiles)", insert_profiles
    )
    insert.add_argument("count", type=_count)
    insert.add_argument("--database", default="Customers", help="ID or name (default Customers)")

    events = command(
        "add-events",
        "add Marketing Suite or Publisher events, stamped now (POST /_emulator/events)",
        add_events,
    )
    events.add_argument("count", type=_count)
    events.add_argument("--kind", choices=mailings.EVENT_KINDS, default="clicks")
    events.add_argument("--product", choices=mailings.PRODUCTS, default="ms")
    events.add_argument("--emailing", type=_positive, help="only this emailing (default: all)")

    field = command("add-field", "add a database or collection field (POST .../fields)", add_field)
    field.add_argument("--database", required=True, help="ID or name")
    field.add_argument("--collection", help="ID or name: a collection field instead")
    field.add_argument("--name", required=True)
    field.add_argument("--type", required=True, choices=sorted(fieldtypes.ALL_TYPES))
    field.add_argument("--default", default="", help="default value for new profiles")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        print(args.run(Client(args.url, args.token), args), flush=True)
    except CliError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
