"""Benchmark of tap-copernica and target-copernica: `python bench/run.py`.

Starts `bench/fake_copernica.py` (precomputed Copernica-shaped pages, exact `id`/`modified`
filters; see its docstring for why not the test emulator) as its own process, then runs
each variant as a child process on the same data and prints records/s, ratios, requests
and peak RSS as markdown tables (also written to `bench/RESULTS.md`, raw numbers to
`bench/results/*.json`).

Tap section: the raw floor (`bench/raw_floor.py`: requests + json, keyset pages, one
RECORD line per profile) and `tap-copernica` with a catalog that selects only `profiles`,
first without latency (N profiles), then with `--latency-ms` per request (a smaller
database of `--latency-n` profiles, 100,000 by default: large enough that paging, not the
fixed startup, sets the ratio), `max_parallel_requests` 1, 4 and 8. Both also as a first
sync from an early `start_date` (every request filtered by the API on `modified` too), and
through the typed `profiles_<name>` stream from that date; the goals compare the parallel
runs under latency with the serial raw client.
Target section: `target-copernica` writing N records through the bulk import path and the
API path, without latency and with `--target-latency-ms`.

Every run's output is checked: the tap must emit exactly the database's profiles (count and
ID sum), the target must leave exactly N profiles in the destination.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import IO, Any
from urllib import request as urlrequest

from precompile import compile_plugins

X = "\u00d7"  # multiplication sign, for the tables
DASH = "\u2013"  # en dash: not measured
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
TAP_DB, SMALL_DB, BENCH_DB, EMPTY_DB = "1", "2", "3", "4"
#: The tap's first sync from a start date: early, so every profile is read (the output check
#: holds), each request filtered by the API on `modified` as well.
TAP_START_DATE = "2000-01-01T00:00:00Z"
TIME_BIN = "/usr/bin/time" if Path("/usr/bin/time").exists() else ""


# -- the fake server ------------------------------------------------------------------------
class FakeServer:
    """`fake_copernica.py` in its own process; control calls go to `/_bench/...`."""

    def __init__(self, n: int, small_n: int) -> None:
        began = time.perf_counter()
        self.proc = subprocess.Popen(
            [PYTHON, str(HERE / "fake_copernica.py"), "--n", str(n), "--small-n", str(small_n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fake Copernica server did not start")
        info = json.loads(line)
        self.api_url: str = info["api_url"]
        self.auth_url: str = info["auth_url"]
        self.api_token: str = info["api_token"]
        self.base = self.api_url.removesuffix("/v4")
        self.seconds = time.perf_counter() - began

    def call(self, path: str, method: str = "GET") -> Any:
        req = urlrequest.Request(
            f"{self.base}/_bench/{path}", method=method, data=b"" if method == "POST" else None
        )
        with urlrequest.urlopen(req, timeout=30) as answer:
            return json.loads(answer.read())

    def latency(self, ms: float) -> None:
        self.call(f"latency?ms={ms}", "POST")

    def reset(self) -> None:
        self.call("reset", "POST")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- running one child ----------------------------------------------------------------------
@dataclass
class Run:
    """One child process: wall time, CPU, peak RSS and what the server saw."""

    ok: bool
    seconds: float
    cpu_seconds: float
    rss_mb: float
    requests: int
    error: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def run_child(
    cmd: Sequence[str],
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    timeout: float = 3600,
) -> tuple[int, float, float, float, str]:
    """(exit status, wall s, CPU s, peak RSS MB, stderr tail) of one command.

    Peak RSS comes from `/usr/bin/time -f %M` when present: `ru_maxrss` from `wait4` would
    also count this harness's own memory, which a forked child inherits until it execs.
    """
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as timing:
        wrapper = [TIME_BIN, "-f", "%M %U %S", "-o", timing.name] if TIME_BIN else []
        began = time.perf_counter()
        proc = subprocess.Popen(
            [*wrapper, *cmd],
            stdin=stdin or subprocess.DEVNULL,
            stdout=stdout or subprocess.DEVNULL,
            stderr=err,
            cwd=tempfile.gettempdir(),
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # blocks: no polling on a 2-core box
        finally:
            killer.cancel()
        seconds = time.perf_counter() - began
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        rss, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
        # "%M %U %S" is the last line ("Command exited with non-zero status N" may precede it).
        measured = (timing.read().strip().splitlines() or [""])[-1].split()
        if len(measured) == 3 and measured[0].isdigit():
            rss, cpu = int(measured[0]) / 1024, float(measured[1]) + float(measured[2])
        err.seek(0)
        tail = err.read()[-3000:].decode("utf-8", "replace")
    return code, seconds, cpu, rss, tail


def request_count(stats: dict[str, int]) -> int:
    return sum(v for k, v in stats.items() if k not in ("import rows", "written rows"))


def scan_output(path: Path) -> tuple[int, int, int]:
    """(RECORD messages, sum of record IDs, distinct IDs) of a tap's output file."""
    count = total = 0
    seen: set[int] = set()
    with path.open("rb") as handle:
        for line in handle:
            if b'"RECORD"' not in line[:40]:
                continue
            record = json.loads(line)["record"]
            pid = int(record.get("ID") or record.get("id"))
            count += 1
            total += pid
            seen.add(pid)
    return count, total, len(seen)


# -- tap section ----------------------------------------------------------------------------
class TapBench:
    def __init__(
        self, server: FakeServer, work: Path, tap_cmd: list[str], log: Callable[[str], None]
    ) -> None:
        self.server = server
        self.work = work
        self.tap_cmd = tap_cmd
        self.log = log
        self.info = server.call("info")["databases"]
        self.catalog: Path | None = None
        self.catalog_error = ""
        # database -> a catalog selecting only its typed `profiles_<name>` stream
        self.typed_catalogs: dict[str, Path] = {}

    def config(self, database: str, parallel: int | None, start_date: str | None = None) -> Path:
        cfg: dict[str, Any] = {
            "api_token": self.server.api_token,
            "api_url": self.server.api_url,
            "auth_url": self.server.auth_url,
            "page_size": 1000,
            "database_ids": [database],
        }
        if parallel is not None:
            cfg["max_parallel_requests"] = parallel
        if start_date:
            cfg["start_date"] = start_date
        path = self.work / f"tap-{database}-{parallel}-{bool(start_date)}.json"
        path.write_text(json.dumps(cfg))
        return path

    def discover_typed(self, database: str) -> str:
        """A catalog selecting only the database's typed stream; the stream's name, or why
        there is none."""
        out = self.work / f"discovered-{database}.json"
        with out.open("wb") as handle:
            code, _, _, _, _ = run_child(
                [*self.tap_cmd, "--config", str(self.config(database, None)), "--discover"],
                stdout=handle,
            )
        if code != 0:
            return f"typed discovery failed (exit {code})"
        catalog = json.loads(out.read_text())
        typed = [
            s["tap_stream_id"]
            for s in catalog.get("streams", [])
            if str(s.get("tap_stream_id")).startswith("profiles_")
        ]
        if len(typed) != 1:
            return f"no single typed profiles stream for database {database}: {typed}"
        for stream in catalog["streams"]:
            chosen = stream.get("tap_stream_id") == typed[0]
            stream["selected"] = chosen
            for entry in stream.get("metadata", []):
                if entry.get("breadcrumb") == []:
                    entry.setdefault("metadata", {})["selected"] = chosen
        self.typed_catalogs[database] = self.work / f"catalog-{database}.json"
        self.typed_catalogs[database].write_text(json.dumps(catalog))
        return typed[0]

    def discover(self) -> None:
        out = self.work / "discovered.json"
        with out.open("wb") as handle:
            code, _, _, _, err = run_child(
                [*self.tap_cmd, "--config", str(self.config(TAP_DB, None)), "--discover"],
                stdout=handle,
            )
        if code != 0:
            last = (err.strip().splitlines() or [""])[-1]
            self.catalog_error = f"discovery failed (exit {code}): {last}"
            return
        catalog = json.loads(out.read_text())
        names = [s.get("tap_stream_id") for s in catalog.get("streams", [])]
        if "profiles" not in names:
            self.catalog_error = f"the catalog has no `profiles` stream (streams: {names})"
            return
        for stream in catalog["streams"]:
            chosen = stream.get("tap_stream_id") == "profiles"
            stream["selected"] = chosen
            for entry in stream.get("metadata", []):
                if entry.get("breadcrumb") == []:
                    entry.setdefault("metadata", {})["selected"] = chosen
        self.catalog = self.work / "catalog.json"
        self.catalog.write_text(json.dumps(catalog))

    def run(
        self,
        kind: str,
        database: str,
        parallel: int | None = None,
        *,
        start_date: str | None = None,
        typed: bool = False,
    ) -> Run:
        """One run: `kind` "floor" (the raw client) or "tap" (the generic `profiles` stream,
        or with `typed` the database's `profiles_<name>`; from `start_date` when given)."""
        expected = self.info[database]
        out = self.work / "out.jsonl"
        if kind == "floor":
            cmd = [
                PYTHON,
                str(HERE / "raw_floor.py"),
                "--api-url",
                self.server.api_url,
                "--auth-url",
                self.server.auth_url,
                "--api-token",
                self.server.api_token,
                "--database",
                database,
            ]
        else:
            catalog = self.typed_catalogs.get(database) if typed else self.catalog
            if catalog is None:
                return Run(False, 0, 0, 0, 0, self.catalog_error or "no typed catalog")
            cmd = [
                *self.tap_cmd,
                "--config",
                str(self.config(database, parallel, start_date)),
                "--catalog",
                str(catalog),
            ]
        self.server.reset()
        with out.open("wb") as handle:
            code, seconds, cpu, rss, err = run_child(cmd, stdout=handle)
        stats = self.server.call("stats")
        result = Run(code == 0, seconds, cpu, rss, request_count(stats), detail={"stats": stats})
        if code != 0:
            result.error = f"exit {code}: " + (err.strip().splitlines() or [""])[-1][:300]
        else:
            count, total, distinct = scan_output(out)
            if (count, total, distinct) != (expected["rows"], expected["id_sum"], expected["rows"]):
                result.ok = False
                result.error = (
                    f"wrong output: {count} records ({distinct} distinct, ID sum {total}); "
                    f"expected {expected['rows']} (ID sum {expected['id_sum']})"
                )
        out.unlink(missing_ok=True)
        label = kind if parallel is None else f"{kind} p={parallel}"
        label += " typed" if typed else ""
        label += " start_date" if start_date else ""
        self.log(
            f"  {label:<26} db {database}: {seconds:7.2f} s  {rss:6.1f} MB  "
            f"{result.requests} requests" + ("" if result.ok else f"  FAILED {result.error}")
        )
        return result


# -- target section -------------------------------------------------------------------------
def target_status(target_cmd: list[str]) -> tuple[bool, str, list[str]]:
    """(loadable, message, setting names) from `target-copernica --about --format json`."""
    try:
        done = subprocess.run(
            [*target_cmd, "--about", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except OSError as error:
        return False, f"target-copernica cannot be started: {error}", []
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"target-copernica cannot load yet (exit {done.returncode}: {last[:200]})", []
    try:
        about = json.loads(done.stdout)
    except ValueError:
        return False, "target-copernica --about printed no JSON", []
    names = list(about.get("settings", {}).get("properties", {}))
    missing = [n for n in ("database", "key_fields", "write_path") if n not in names]
    if missing:
        return False, f"target-copernica lacks the settings {missing}", names
    return True, "", names


def write_records(path: Path, n: int) -> None:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string"},
            "firstname": {"type": ["string", "null"]},
            "lastname": {"type": ["string", "null"]},
            "city": {"type": ["string", "null"]},
            "age": {"type": ["integer", "null"]},
        },
    }
    first, last = ("Anna", "Bram", "Carla", "Daan"), ("Jansen", "Bakker", "Visser")
    cities = ("Amsterdam", "Utrecht", None)
    with path.open("w") as handle:
        handle.write(
            json.dumps(
                {
                    "type": "SCHEMA",
                    "stream": "people",
                    "schema": schema,
                    "key_properties": ["email"],
                }
            )
            + "\n"
        )
        for i in range(n):
            record = {
                "email": f"person{i}@example.com",
                "firstname": first[i % 4],
                "lastname": last[i % 3],
                "city": cities[i % 3],
                "age": 18 + i % 70,
            }
            handle.write(
                json.dumps({"type": "RECORD", "stream": "people", "record": record}) + "\n"
            )
        handle.write(
            json.dumps({"type": "STATE", "value": {"bookmarks": {"people": {"n": n}}}}) + "\n"
        )


class TargetBench:
    def __init__(
        self,
        server: FakeServer,
        work: Path,
        target_cmd: list[str],
        settings: list[str],
        log: Callable[[str], None],
    ) -> None:
        self.server, self.work, self.target_cmd, self.settings, self.log = (
            server,
            work,
            target_cmd,
            settings,
            log,
        )
        self.files: dict[int, Path] = {}

    def records(self, n: int) -> Path:
        if n not in self.files:
            self.files[n] = self.work / f"records-{n}.jsonl"
            write_records(self.files[n], n)
        return self.files[n]

    def run(self, path: str, n: int, parallel: int | None) -> Run:
        cfg: dict[str, Any] = {
            "api_token": self.server.api_token,
            "api_url": self.server.api_url,
            "auth_url": self.server.auth_url,
            "database": BENCH_DB,
            "key_fields": ["email"],
            "write_path": path,
            "rejected_records_path": str(self.work / "rejected.jsonl"),
        }
        if parallel is not None:
            cfg["max_parallel_requests"] = parallel
        config = self.work / "target.json"
        config.write_text(json.dumps(cfg))
        self.server.reset()
        with self.records(n).open("rb") as source:
            code, seconds, cpu, rss, err = run_child(
                [*self.target_cmd, "--config", str(config)], stdin=source
            )
        stats = self.server.call("stats")
        written = self.server.call("info")["databases"][BENCH_DB]["written"]
        result = Run(
            code == 0,
            seconds,
            cpu,
            rss,
            request_count(stats),
            detail={"stats": stats, "written": written},
        )
        if code != 0:
            result.error = f"exit {code}: " + (err.strip().splitlines() or [""])[-1][:300]
        elif written != n:
            result.ok, result.error = False, f"{written} profiles written, expected {n}"
        self.log(
            f"  {path:<5} p={parallel!s:<4} n={n:<7}: {seconds:7.2f} s  {rss:6.1f} MB  "
            f"{result.requests} requests" + ("" if result.ok else f"  FAILED {result.error}")
        )
        return result


# -- orchestration --------------------------------------------------------------------------
@dataclass
class Row:
    section: str
    variant: str
    n: int
    latency_ms: float
    runs: list[Run]

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.ok and self.seconds > 0 else 0.0

    @property
    def rss(self) -> float:
        return max(r.rss_mb for r in self.runs)

    @property
    def requests(self) -> int:
        return self.runs[-1].requests

    @property
    def error(self) -> str:
        return next((r.error for r in self.runs if r.error), "")


def repeat(reps: int, one: Callable[[], Run]) -> list[Run]:
    runs: list[Run] = []
    for _ in range(reps):
        result = one()
        runs.append(result)
        if not result.ok:
            break
    return runs


def tool(name: str, override: str | None) -> list[str]:
    if override:
        return override.split()
    local = Path(PYTHON).parent / name
    return [str(local)] if local.exists() else [shutil.which(name) or name]


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in (
        "tap-copernica",
        "singer-sdk",
        "requests",
        "msgspec",
        "orjson",
        "jsonschema",
        "fastjsonschema",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "status",
                "--porcelain",
                "--",
                "tap_copernica",
                "target_copernica",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (
        f"{rev}{' + uncommitted changes in tap_copernica/target_copernica' if dirty else ''}"
        if rev
        else "unknown"
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt_rate(row: Row | None) -> str:
    if row is None:
        return DASH
    return f"{row.rate:,.0f}" if row.ok else f"failed: {row.error}"


def ratio(a: Row | None, b: Row | None) -> float | None:
    if a is None or b is None or not a.ok or not b.ok or b.rate == 0:
        return None
    return a.rate / b.rate


def fmt_ratio(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}{X}"


def goal(text: str, value: float | None, threshold: float, unit: str = X) -> tuple[str, str, str]:
    if value is None:
        return text, "not measured", DASH
    shown = f"{value:,.0f} {unit}".strip() if unit != X else f"{value:.2f}{X}"
    if value >= threshold:
        return text, shown, "**met**"
    short = (1 - value / threshold) * 100
    return text, shown, f"**missed** ({short:.0f} % short)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--n",
        type=int,
        default=200_000,
        help="profiles read without latency (1,000,000 for the RSS goal)",
    )
    parser.add_argument(
        "--latency-n",
        type=int,
        default=100_000,
        help="profiles read under latency (at 20,000 the fixed ~0.8 s of every run, interpreter, "
        "authentication, discovery round trips and the first page, is a third of a parallel "
        "run, so the ratio measures startup; 100,000 keeps the serial run near 13 s)",
    )
    parser.add_argument("--latency-ms", type=float, default=100, help="tap: latency per request")
    parser.add_argument(
        "--target-n",
        type=int,
        default=200_000,
        help="target: records through the bulk path without latency",
    )
    parser.add_argument(
        "--target-api-n",
        type=int,
        default=20_000,
        help="target: records through the API path without latency",
    )
    parser.add_argument(
        "--target-latency-n",
        type=int,
        default=None,
        help="target: records through the bulk path under latency (default: --target-n; "
        "on a small load the fixed costs, startup and first round trips, hide the bulk path)",
    )
    parser.add_argument(
        "--target-api-latency-n",
        type=int,
        default=1_000,
        help="target: records through the API path under latency",
    )
    parser.add_argument("--target-latency-ms", type=float, default=20)
    parser.add_argument(
        "--sections",
        default="tap,target",
        help="comma-separated: tap, target, account (the whole account on the emulator, "
        "bench/account.py; not in the default: a first sync at 100 ms takes minutes)",
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="runs per variant (the median is shown)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, one run each, low latency (a smoke test)"
    )
    parser.add_argument(
        "--tap-cmd", help="command for the tap (default: tap-copernica next to this Python)"
    )
    parser.add_argument("--target-cmd", help="command for the target (default: target-copernica)")
    parser.add_argument(
        "--out", default=str(HERE / "RESULTS.md"), help="markdown file to write ('' = none)"
    )
    parser.add_argument(
        "--json-out", default=str(HERE / "results" / "last.json"), help="raw numbers ('' = none)"
    )
    args = parser.parse_args(argv)
    if args.target_latency_n is None:
        args.target_latency_n = args.target_n
    if args.quick:
        args.n, args.latency_n, args.latency_ms, args.reps = (
            min(args.n, 3000),
            min(args.latency_n, 3000),
            20,
            1,
        )
        args.target_n = args.target_api_n = args.target_latency_n = min(args.target_n, 300)
        args.target_api_latency_n = min(args.target_api_latency_n, 20)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    log(f"bytecode written for {', '.join(compile_plugins()) or 'nothing'}")
    rows: list[Row] = []
    notes: list[str] = []
    goals: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="copernica-bench-") as tmp:
        work = Path(tmp)
        log(f"starting the fake Copernica server with {args.n:,} + {args.latency_n:,} profiles ...")
        server = FakeServer(
            args.n if "tap" in sections else 0, args.latency_n if "tap" in sections else 0
        )
        log(f"  ready after {server.seconds:.1f} s at {server.api_url}")
        try:
            if "tap" in sections:
                rows += tap_section(
                    server, work, tool("tap-copernica", args.tap_cmd), args, log, notes, goals
                )
            if "target" in sections:
                rows += target_section(
                    server, work, tool("target-copernica", args.target_cmd), args, log, notes, goals
                )
        finally:
            server.stop()

    text = report(rows, notes, goals, args, server.seconds)
    account_json: dict[str, Any] | None = None
    if "account" in sections:
        # bench/account.py, loaded only when asked for (it builds the emulator)
        from account import section as account_section  # noqa: PLC0415

        account_text, account_json = account_section(
            quick=args.quick, latency_ms=args.latency_ms, log=log
        )
        text += "\n" + account_text
    sys.stdout.write(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "versions": versions(),
                    "revision": git_revision(),
                    "rows": [{**asdict(r), "rate": r.rate, "ok": r.ok} for r in rows],
                    **({"account": account_json} if account_json is not None else {}),
                },
                indent=1,
            )
        )
    return 0


def tap_section(
    server: FakeServer,
    work: Path,
    tap_cmd: list[str],
    args: argparse.Namespace,
    log: Callable[[str], None],
    notes: list[str],
    goals: list[tuple[str, str, str]],
) -> list[Row]:
    bench = TapBench(server, work, tap_cmd, log)
    bench.discover()
    if bench.catalog_error:
        notes.append(f"tap-copernica: {bench.catalog_error}")
        log(f"  tap-copernica: {bench.catalog_error}")
    typed_names = {db: bench.discover_typed(db) for db in (TAP_DB, SMALL_DB)}
    for db, name in typed_names.items():
        if db not in bench.typed_catalogs:
            notes.append(f"tap-copernica typed stream: {name}")
    start = TAP_START_DATE
    rows: list[Row] = []
    log(f"tap, no latency, N={args.n:,} ({args.reps} runs each, interleaved)")
    floor = Row("tap", "raw floor (requests + json)", args.n, 0, [])
    tap1 = Row("tap", "tap-copernica max_parallel_requests=1", args.n, 0, [])
    tap4 = Row("tap", "tap-copernica max_parallel_requests=4 (default)", args.n, 0, [])
    since4 = Row("tap", f"tap-copernica start_date {start} p=4", args.n, 0, [])
    typed4 = Row(
        "tap", f"tap-copernica {typed_names[TAP_DB]} start_date {start} p=4", args.n, 0, []
    )
    variants: list[tuple[Row, str, int | None, dict[str, Any]]] = [
        (floor, "floor", None, {}),
        (tap1, "tap", 1, {}),
        (tap4, "tap", 4, {}),
        (since4, "tap", 4, {"start_date": start}),
        (typed4, "tap", 4, {"start_date": start, "typed": True}),
    ]
    if args.quick:
        variants = [v for v in variants if v[0] is not tap1]
    for _ in range(args.reps):  # round-robin, so machine noise lands on every variant alike
        for row, kind, parallel, options in variants:
            if not row.runs or row.ok:
                row.runs.append(bench.run(kind, TAP_DB, parallel, **options))
    rows += [row for row, _, _, _ in variants]
    if not args.quick:
        rows.append(
            Row(
                "tap",
                "tap-copernica startup (empty database)",
                0,
                0,
                [bench.run("tap", EMPTY_DB, 4)],
            )
        )

    server.latency(args.latency_ms)
    log(f"tap, {args.latency_ms:g} ms per request, N={args.latency_n:,}")
    n, ms = args.latency_n, args.latency_ms
    lat_floor = Row("tap", "raw floor (requests + json), serial", n, ms, [])
    lat = {p: Row("tap", f"tap-copernica max_parallel_requests={p}", n, ms, []) for p in (1, 4, 8)}
    lat_since = {
        p: Row("tap", f"tap-copernica start_date {start} p={p}", n, ms, []) for p in (4, 8)
    }
    lat_typed = {
        p: Row("tap", f"tap-copernica {typed_names[SMALL_DB]} start_date {start} p={p}", n, ms, [])
        for p in (4, 8)
    }
    lat_variants: list[tuple[Row, str, int | None, dict[str, Any]]] = [
        (lat_floor, "floor", None, {}),
        *((row, "tap", p, {}) for p, row in lat.items()),
        *((row, "tap", p, {"start_date": start}) for p, row in lat_since.items()),
        *((row, "tap", p, {"start_date": start, "typed": True}) for p, row in lat_typed.items()),
    ]
    if args.quick:
        lat_variants = [v for v in lat_variants if v[2] != 4]
    for _ in range(args.reps):
        for row, kind, parallel, options in lat_variants:
            if not row.runs or row.ok:
                row.runs.append(bench.run(kind, SMALL_DB, parallel, **options))
    server.latency(0)
    rows += [row for row, _, _, _ in lat_variants]

    goals.append(
        goal(f"tap, no latency ≥ 0.8 {X} raw floor (default settings)", ratio(tap4, floor), 0.8)
    )
    goals.append(
        goal(
            f"tap, no latency, typed stream from start_date ≥ 0.8 {X} raw floor",
            ratio(typed4, floor),
            0.8,
        )
    )
    goals.append(
        goal(f"tap, {args.latency_ms:g} ms: p=4 ≥ 3.5 {X} p=1", ratio(lat.get(4), lat[1]), 3.5)
    )
    goals.append(goal(f"tap, {args.latency_ms:g} ms: p=8 ≥ 5 {X} p=1", ratio(lat[8], lat[1]), 5.0))
    for family, by_p in (
        ("full load", lat),
        ("first sync from start_date", lat_since),
        ("typed stream from start_date", lat_typed),
    ):
        for p, threshold in ((4, 3.5), (8, 5.0)):
            goals.append(
                goal(
                    f"tap, {args.latency_ms:g} ms, {family}: p={p} ≥ {threshold:g} {X} "
                    "the serial raw client",
                    ratio(by_p.get(p), lat_floor),
                    threshold,
                )
            )
    same = lat[4] if lat[4].runs else lat[8]
    small_rss = same.rss if same.ok else None
    big_rss = tap4.rss if tap4.ok else None
    if small_rss and big_rss:
        growth = big_rss / small_rss
        flat = growth <= 1.25
        goals.append(
            (
                f"tap peak RSS flat in N ({args.latency_n:,} → {args.n:,} profiles, ≤ 1.25{X})",
                f"{small_rss:.0f} → {big_rss:.0f} MB ({growth:.2f}{X})",
                "**met**" if flat else "**missed**",
            )
        )
        if args.n >= 1_000_000:
            goals.append(
                (
                    f"tap peak RSS < 200 MB at N = {args.n:,}",
                    f"{big_rss:.0f} MB",
                    "**met**" if big_rss < 200 else f"**missed** ({big_rss - 200:.0f} MB over)",
                )
            )
        else:
            goals.append(
                ("tap peak RSS < 200 MB at N = 1,000,000", "not run (use --n 1000000)", DASH)
            )
    return rows


def target_section(
    server: FakeServer,
    work: Path,
    target_cmd: list[str],
    args: argparse.Namespace,
    log: Callable[[str], None],
    notes: list[str],
    goals: list[tuple[str, str, str]],
) -> list[Row]:
    loadable, message, settings = target_status(target_cmd)
    if not loadable:
        notes.append(f"target section skipped: {message}")
        log(f"target section skipped: {message}")
        return []
    bench = TargetBench(server, work, target_cmd, settings, log)
    lat_ms = args.target_latency_ms
    log(f"target, no latency and {lat_ms:g} ms ({args.reps} runs each)")
    specs = [
        ("bulk", args.target_n, 0.0, None, "bulk import (write_path=bulk)"),
        (
            "api",
            args.target_api_n,
            0.0,
            None,
            "API (write_path=api, max_parallel_requests=8 default)",
        ),
        ("bulk", args.target_latency_n, lat_ms, None, "bulk import (write_path=bulk)"),
        (
            "api",
            args.target_api_latency_n,
            lat_ms,
            1,
            "API, serial (max_parallel_requests=1): one request per record",
        ),
        ("api", args.target_api_latency_n, lat_ms, 8, "API (max_parallel_requests=8)"),
    ]
    if args.quick:
        specs = [specs[0], specs[3], specs[4]]
    rows: list[Row] = []
    for path, n, latency, parallel, label in specs:
        server.latency(latency)
        rows.append(
            Row(
                "target",
                label,
                n,
                latency,
                repeat(args.reps, partial(bench.run, path, n, parallel)),
            )
        )
    server.latency(0)
    found = {(spec[0], spec[2], spec[3]): row for spec, row in zip(specs, rows, strict=True)}
    bulk0, bulk_lat = found.get(("bulk", 0.0, None)), found.get(("bulk", lat_ms, None))
    serial, parallel8 = found.get(("api", lat_ms, 1)), found.get(("api", lat_ms, 8))
    goals.append(
        goal(
            "target, no latency, validation on: bulk ≥ 50,000 records/s",
            bulk0.rate if bulk0 and bulk0.ok else None,
            50_000,
            "records/s",
        )
    )
    goals.append(
        goal(
            f"target, {lat_ms:g} ms: bulk ≥ 200 {X} one request per record",
            ratio(bulk_lat, serial),
            200,
        )
    )
    goals.append(
        goal(
            f"target, {lat_ms:g} ms: API path parallel ≥ 3 {X} serial", ratio(parallel8, serial), 3
        )
    )
    return rows


def report(
    rows: list[Row],
    notes: list[str],
    goals: list[tuple[str, str, str]],
    args: argparse.Namespace,
    seed_seconds: float,
) -> str:
    lines = ["# Benchmark: tap-copernica and target-copernica", ""]
    lines.append(
        f"Ran {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"on {os.cpu_count()} CPUs ({cpu_model()}), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}."
    )
    lines.append(
        "Packages: "
        + ", ".join(f"{k} {v}" for k, v in versions().items())
        + f". Repository at {git_revision()}."
    )
    cmd = "python bench/run.py " + " ".join(a for a in sys.argv[1:])
    lines += [
        "",
        f"Command: `{cmd.strip()}`"
        + (" (quick mode: tiny sizes, one run; not a measurement)" if args.quick else ""),
        "",
    ]
    lines.append(
        "Server: `bench/fake_copernica.py` (precomputed pages, exact `id`/`modified` filters; "
        f"{seed_seconds:.1f} s to build), "
        "its own process on the same machine. Each figure is the median wall time of "
        f"{args.reps} run(s) of a child process, startup included, stdout to a file; every run's "
        "output is checked (count and ID sum of the records; profiles in the destination). "
        "Peak RSS is the child's maximum resident set (`/usr/bin/time -f %M`). "
        "Requests are counted by the server (authentication included). The plugins' "
        "bytecode is written first (`bench/precompile.py`), as an installed plugin has it."
    )
    for section, title in (("tap", "Tap (`profiles` stream only)"), ("target", "Target")):
        mine = [r for r in rows if r.section == section]
        if not mine:
            continue
        lines += [
            "",
            f"## {title}",
            "",
            f"| variant | N | latency | wall s | records/s | {X} reference | requests "
            "| peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in mine:
            ref = reference(row, mine)
            if ref is None:
                versus = DASH
            elif ref is row:
                versus = f"1.00{X} (ref)"
            else:
                versus = fmt_ratio(ratio(row, ref))
            lines.append(
                f"| {row.variant} | {row.n:,} | {row.latency_ms:g} ms | {row.seconds:.2f} | "
                f"{fmt_rate(row) if row.n else DASH} | {versus} | "
                f"{row.requests:,} | {row.rss:.0f} |"
            )
        if section == "tap":
            lines.append("")
            lines.append(
                "Reference: the raw floor at the same latency for the no-latency rows; "
                "max_parallel_requests=1 for the latency rows "
                "(the raw floor under latency is shown for scale)."
            )
        else:
            lines.append("")
            lines.append(
                "Reference: the serial API row (one request per record) at the same latency. "
                "Validation is on (the SDK default). "
                "Requests include polling of `GET /import/{id}`."
            )
    if goals:
        lines += ["", "## Goals", "", "| goal | measured | |", "|---|---|---|"]
        lines += [f"| {g} | {m} | {v} |" for g, m, v in goals]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def reference(row: Row, rows: list[Row]) -> Row | None:
    """What a row is compared with (see the notes under each table)."""
    same = [r for r in rows if r.latency_ms == row.latency_ms]
    if row.section == "tap":
        if row.n == 0:
            return None
        if row.latency_ms == 0:
            return next((r for r in same if r.variant.startswith("raw floor")), None)
        return next((r for r in same if r.variant.endswith("max_parallel_requests=1")), None)
    return next((r for r in same if "serial" in r.variant), None)


if __name__ == "__main__":
    raise SystemExit(main())
