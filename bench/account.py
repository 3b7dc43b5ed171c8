"""Whole-account benchmark: `python bench/account.py` (also `bench/run.py --sections account`).

Account: the bundled emulator, `Emulator(seed=42, profiles_per_database=2500)`, the account
the issue's request counts were measured on (three databases; Customers has 2,500 profiles,
so its lists take several pages). `--profiles` changes the size; quick mode uses 200, the
`copernica-emulator serve` default. It runs in this process (a
threaded HTTP server: requests are answered concurrently, each delayed by
`emu.faults.latency_ms`); the installed `tap-copernica` CLI runs as a child process with a
discovered catalog in which every stream is selected (but the optional `reconciliation`
audit, see `NOT_SELECTED`).

Rows, at 0 ms and at `--latency-ms` (100) per request, each at the tap's default
`max_parallel_requests` and at 1:

- first sync with `start_date` 2000-01-01 (far before any data);
- first sync without `start_date`;
- incremental sync from the STATE of the first sync without `start_date` (same latency and
  parallelism), nothing changed in between.

Each row: API requests (`/v4` calls; the one authentication is left out), records, wall time
(child process, startup included), the lower bound (`bench/lower_bound.py`, from the
emulator's data) and requests / bound. Goals: a first sync costs at most 1.25 x its bound;
an incremental run with nothing changed costs at most its floor (one request per partition,
plus the pages of full tables that are read again) + `SMALL_CONSTANT`; at the higher latency
the default is at least 3 x as fast as `max_parallel_requests=1`. A run that fails or takes
longer than `--timeout` is reported as such, with the requests it made: the bench reports,
it never fails because a goal is missed.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `bench` and the emulator live in the repo
    sys.path.insert(0, str(ROOT))

from bench.lower_bound import AUTH, Bounds, stream_of  # noqa: E402
from bench.precompile import compile_plugins  # noqa: E402
from copernica_emulator.emulator import Emulator  # noqa: E402

X = "\u00d7"
DASH = "\u2013"
EARLY = "2000-01-01T00:00:00Z"
FIRST_EARLY = "first sync, start_date 2000-01-01"
FIRST_PLAIN = "first sync, no start_date"
INCREMENTAL = "incremental, nothing changed"
SCENARIOS = (FIRST_EARLY, FIRST_PLAIN, INCREMENTAL)
#: Requests an incremental run with nothing changed may spend beyond its floor (the goal's
#: "small constant": e.g. a structure list read once more to plan partitions).
SMALL_CONSTANT = 5
FIRST_SYNC_FACTOR = 1.25
#: Streams left out of "every stream": `reconciliation` is an optional audit (off by default)
#: whose requests go to other streams' endpoints (list totals, emailing statistics), so they
#: could not be told apart from those streams' own.
NOT_SELECTED = frozenset({"reconciliation"})
SPEEDUP_GOAL = 3.0


@dataclass
class AccountRow:
    """One tap run on the whole account."""

    scenario: str
    latency_ms: float
    parallel: int | None  # None: the tap's default
    ok: bool = False
    seconds: float = 0.0
    requests: int = 0
    records: int = 0
    bound: int = 0
    partitions: int = 0
    error: str = ""
    by_stream: dict[str, int] = field(default_factory=dict)
    bound_by_stream: dict[str, int] = field(default_factory=dict)
    #: selected streams `bench/lower_bound.py` has no rule for (left out of the bound)
    no_rule: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "default" if self.parallel is None else str(self.parallel)

    @property
    def ratio(self) -> float | None:
        return self.requests / self.bound if self.bound else None

    @property
    def goal(self) -> tuple[float, str]:
        """(the most requests the goal allows, how that limit is made up)."""
        if self.scenario == INCREMENTAL:
            return self.bound + SMALL_CONSTANT, f"floor {self.bound:,} + {SMALL_CONSTANT}"
        return FIRST_SYNC_FACTOR * self.bound, f"{FIRST_SYNC_FACTOR} {X} {self.bound:,}"

    @property
    def meets_goal(self) -> bool:
        return self.ok and self.requests <= self.goal[0]


@dataclass
class Settings:
    profiles: int = 2500
    latencies: tuple[float, ...] = (0.0, 100.0)
    parallels: tuple[int | None, ...] = (None, 1)
    timeout: float = 600.0
    tap_cmd: tuple[str, ...] = ()


def tap_command() -> list[str]:
    local = Path(sys.executable).parent / "tap-copernica"
    return [str(local)] if local.exists() else ["tap-copernica"]


class AccountBench:
    """An emulator, the tap's catalog for it, and runs of the tap against it."""

    def __init__(self, settings: Settings, work: Path, log: Callable[[str], None]) -> None:
        self.settings, self.work, self.log = settings, work, log
        self.cmd = list(settings.tap_cmd) or tap_command()
        self.emu = Emulator(seed=42, profiles_per_database=settings.profiles).start()
        self.catalog = work / "catalog.json"
        self.streams: list[str] = []
        self._runs = itertools.count(1)  # names the files of each run

    def close(self) -> None:
        self.emu.stop()

    def config(self, **extra: Any) -> dict[str, Any]:
        return {
            "api_token": self.emu.api_token,
            "api_url": self.emu.api_url,
            "auth_url": self.emu.auth_url,
            **extra,
        }

    def discover(self) -> None:
        """Discover once (not counted) and select every stream."""
        config = self.work / "discover-config.json"
        config.write_text(json.dumps(self.config()))
        done = subprocess.run(
            [*self.cmd, "--config", str(config), "--discover"],
            capture_output=True,
            text=True,
            timeout=self.settings.timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"discovery failed: {done.stderr[-2000:]}")
        catalog = json.loads(done.stdout)
        for entry in catalog["streams"]:
            chosen = entry["tap_stream_id"] not in NOT_SELECTED
            for meta in entry["metadata"]:
                if meta["breadcrumb"] == []:
                    meta["metadata"]["selected"] = chosen
            if chosen:
                self.streams.append(entry["tap_stream_id"])
        self.catalog.write_text(json.dumps(catalog))

    def run(
        self, row: AccountRow, config: dict[str, Any], state: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Run the tap once, fill in `row`; returns the run's final STATE."""
        name = str(next(self._runs))
        config_file, state_file = self.work / f"{name}-config.json", self.work / f"{name}-state"
        out_file = self.work / f"{name}-out.jsonl"
        config_file.write_text(json.dumps(config))
        argv = [*self.cmd, "--config", str(config_file), "--catalog", str(self.catalog)]
        if state:
            state_file.write_text(json.dumps(state))
            argv += ["--state", str(state_file)]
        self.emu.faults.latency_ms = row.latency_ms
        first_request = len(self.emu.requests)
        began = time.perf_counter()
        with out_file.open("wb") as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=self.work)
            try:
                code = proc.wait(self.settings.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
            row.seconds = time.perf_counter() - began
            err.seek(0)
            tail = err.read()[-2000:].decode("utf-8", "replace")
        self.emu.faults.latency_ms = 0
        counts = collections.Counter(stream_of(r.path) for r in self.emu.requests[first_request:])
        counts.pop(AUTH, None)
        row.by_stream = dict(sorted(counts.items()))
        row.requests = sum(counts.values())
        final: dict[str, Any] = {}
        for line in out_file.read_bytes().splitlines():
            try:
                message = json.loads(line)
            except ValueError:  # the last line of a run killed at the timeout
                continue
            if message.get("type") == "RECORD":
                row.records += 1
            elif message.get("type") == "STATE":
                final = message["value"]
        if code is None:
            row.error = f"timed out after {self.settings.timeout:g} s"
        elif code != 0:
            row.error = f"exit {code}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"
        row.ok = code == 0
        return final

    def bounds(self, row: AccountRow, start_date: str | None) -> None:
        bounds = Bounds(self.emu.store, start_date=start_date)
        incremental = row.scenario == INCREMENTAL
        row.bound_by_stream = bounds.bounds(self.streams, incremental=incremental)
        row.bound = sum(row.bound_by_stream.values())
        row.partitions = bounds.partition_count(self.streams)
        row.no_rule = [s for s in self.streams if not bounds.has_rule(s)]

    def measure(self) -> list[AccountRow]:
        rows: list[AccountRow] = []
        for latency in self.settings.latencies:
            for parallel in self.settings.parallels:
                extra = {} if parallel is None else {"max_parallel_requests": parallel}
                early = AccountRow(FIRST_EARLY, latency, parallel)
                plain = AccountRow(FIRST_PLAIN, latency, parallel)
                again = AccountRow(INCREMENTAL, latency, parallel)
                self.run(early, self.config(start_date=EARLY, **extra), None)
                self.bounds(early, EARLY)
                state = self.run(plain, self.config(**extra), None)
                self.bounds(plain, None)
                if plain.ok:
                    self.run(again, self.config(**extra), state)
                else:
                    again.error = "not run: the first sync failed"
                self.bounds(again, None)
                for row in (early, plain, again):
                    self.log(
                        f"  {row.scenario}, {latency:g} ms, parallel {row.label}: "
                        f"{row.requests:,} requests (bound {row.bound:,}), {row.records:,} "
                        f"records, {row.seconds:.1f} s{' ' + row.error if row.error else ''}"
                    )
                rows += [early, plain, again]
        return rows


def measure(settings: Settings, log: Callable[[str], None]) -> list[AccountRow]:
    with tempfile.TemporaryDirectory(prefix="copernica-account-") as tmp:
        log(f"whole account: emulator seed 42, {settings.profiles:,} profiles per database")
        bench = AccountBench(settings, Path(tmp), log)
        try:
            bench.discover()
            return bench.measure()
        finally:
            bench.close()


# -- report ---------------------------------------------------------------------------------
def _find(rows: Iterable[AccountRow], scenario: str, latency: float, parallel: int | None) -> Any:
    return next(
        (
            r
            for r in rows
            if (r.scenario, r.latency_ms, r.parallel) == (scenario, latency, parallel)
        ),
        None,
    )


def goals(rows: list[AccountRow]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) lines, measured on the default-parallel rows."""
    found: list[tuple[str, str, str]] = []
    latencies = sorted({r.latency_ms for r in rows})
    for scenario in SCENARIOS:
        for latency in latencies:
            row = _find(rows, scenario, latency, None)
            if row is None:
                continue
            limit, made_of = row.goal
            text = f"{scenario}, {latency:g} ms: requests ≤ {made_of}" + (
                f" (partitions: {row.partitions:,})" if scenario == INCREMENTAL else ""
            )
            measured = f"{row.requests:,}" + ("" if row.ok else f" ({row.error})")
            if not row.ok:
                verdict = "**not measured**"
            elif row.meets_goal:
                verdict = "**met**"
            else:
                verdict = f"**missed** ({row.requests - limit:,.0f} over)"
            found.append((text, measured, verdict))
    for scenario in (FIRST_EARLY, FIRST_PLAIN):
        for latency in latencies:
            fast, slow = _find(rows, scenario, latency, None), _find(rows, scenario, latency, 1)
            if latency == 0 or fast is None or slow is None:
                continue
            text = f"{scenario}, {latency:g} ms: default ≥ {SPEEDUP_GOAL:g} {X} faster than 1"
            if not (fast.ok and slow.ok) or fast.seconds <= 0:
                found.append((text, "not measured (a run failed)", "**not measured**"))
                continue
            speedup = slow.seconds / fast.seconds
            met = speedup >= SPEEDUP_GOAL
            found.append(
                (
                    text,
                    f"{speedup:.2f}{X} ({slow.seconds:.1f} s → {fast.seconds:.1f} s)",
                    "**met**" if met else f"**missed** ({(1 - speedup / SPEEDUP_GOAL):.0%} short)",
                )
            )
    return found


def markdown(rows: list[AccountRow], settings: Settings) -> str:
    lines = [
        "## Whole account (every stream selected)",
        "",
        f"Emulator seed 42, {settings.profiles:,} profiles per database, in the harness "
        "process (threaded server); `tap-copernica` as a child process with a discovered "
        "catalog, every stream selected but the optional `reconciliation` audit. Requests: "
        "`/v4` calls counted by the emulator (authentication left out). Lower bound: "
        "`bench/lower_bound.py`, from the emulator's data. The incremental row starts from "
        "the STATE of the first sync without start_date at the same latency and parallelism; "
        "its bound is the floor of a run with nothing changed.",
        "",
        "| scenario | latency | max_parallel_requests | requests | records | wall s "
        "| lower bound | requests / bound | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = DASH if row.ratio is None else f"{row.ratio:.2f}{X}"
        limit, made_of = row.goal
        verdict = ("met" if row.meets_goal else "missed") if row.ok else row.error
        lines.append(
            f"| {row.scenario} | {row.latency_ms:g} ms | {row.label} | {row.requests:,} "
            f"| {row.records:,} | {row.seconds:.2f} | {row.bound:,} | {ratio} "
            f"| ≤ {limit:,.0f} ({made_of}): {verdict} |"
        )
    over = _over_bound(rows)
    if over:
        lines += [
            "",
            "Streams over their bound (default parallelism, lowest latency):",
            "",
            "| scenario | stream | requests | bound |",
            "|---|---|---:|---:|",
        ]
        lines += [f"| {s} | {name} | {got:,} | {bound:,} |" for s, name, got, bound in over]
    no_rule = sorted({s for row in rows for s in row.no_rule})
    if no_rule:
        lines += ["", f"No lower-bound rule (left out of the bound): {', '.join(no_rule)}."]
    lines += ["", "### Whole-account goals", "", "| goal | measured | |", "|---|---|---|"]
    lines += [f"| {g} | {m} | {v} |" for g, m, v in goals(rows)]
    return "\n".join(lines) + "\n"


def _over_bound(rows: list[AccountRow]) -> list[tuple[str, str, int, int]]:
    latency = min((r.latency_ms for r in rows), default=0.0)
    found = []
    for scenario in SCENARIOS:
        row = _find(rows, scenario, latency, None)
        if row is None:
            continue
        for name in sorted(set(row.by_stream) | set(row.bound_by_stream)):
            got, bound = row.by_stream.get(name, 0), row.bound_by_stream.get(name, 0)
            if got > bound:
                found.append((scenario, name, got, bound))
    return found


def as_json(rows: list[AccountRow], settings: Settings) -> dict[str, Any]:
    return {
        "settings": asdict(settings),
        "rows": [{**asdict(r), "ratio": r.ratio, "meets_goal": r.meets_goal} for r in rows],
        "goals": goals(rows),
    }


def section(
    *, quick: bool, latency_ms: float, log: Callable[[str], None], timeout: float = 600.0
) -> tuple[str, dict[str, Any]]:
    """The markdown section and raw numbers, for `bench/run.py --sections account`."""
    settings = quick_settings() if quick else Settings(latencies=(0.0, latency_ms))
    settings.timeout = timeout
    rows = measure(settings, log)
    return markdown(rows, settings), as_json(rows, settings)


def quick_settings() -> Settings:
    """A smoke test: the serve default's 200 profiles, 20 ms only."""
    return Settings(profiles=200, latencies=(20.0,), timeout=120.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profiles", type=int, default=2500, help="profiles per database")
    parser.add_argument("--latency-ms", type=float, default=100, help="the latency row's delay")
    parser.add_argument(
        "--parallel",
        default="default,1",
        help="comma-separated max_parallel_requests values ('default': not set)",
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per tap run")
    parser.add_argument("--quick", action="store_true", help="200 profiles, 20 ms only")
    parser.add_argument("--tap-cmd", help="command for the tap (default: tap-copernica)")
    parser.add_argument("--out", default="", help="markdown file to write")
    parser.add_argument("--json-out", default="", help="raw numbers as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        settings = quick_settings()
    else:
        settings = Settings(profiles=args.profiles, latencies=(0.0, args.latency_ms))
    settings.parallels = tuple(
        None if p.strip() == "default" else int(p) for p in args.parallel.split(",") if p.strip()
    )
    if args.timeout != parser.get_default("timeout") or not args.quick:
        settings.timeout = args.timeout
    if args.tap_cmd:
        settings.tap_cmd = tuple(args.tap_cmd.split())

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    log(f"bytecode written for {', '.join(compile_plugins()) or 'nothing'}")
    rows = measure(settings, log)
    text = markdown(rows, settings)
    sys.stdout.write(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(as_json(rows, settings), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
