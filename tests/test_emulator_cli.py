"""`copernica-emulator`: serve, change the running emulator's data, and see it flow through.

Everything here runs real processes over HTTP: `copernica-emulator serve`, its data commands,
and `tap-copernica` reading the emulator before and after the changes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.singer import REPO, SyncResult, script

EMULATOR = script("copernica-emulator")
TAP = script("tap-copernica")
PLUGIN_SETTINGS = [
    f"{prefix}_{name}"
    for prefix in ("TAP_COPERNICA", "TARGET_COPERNICA")
    for name in ("API_URL", "AUTH_URL", "API_TOKEN")
]


@dataclass
class Served:
    process: subprocess.Popen[str]
    header: list[str]  # the comment lines
    exports: dict[str, str]

    @property
    def env(self) -> dict[str, str]:
        """What the data commands need (the plugins' variables are left out on purpose)."""
        return {
            "COPERNICA_EMULATOR_URL": self.exports["COPERNICA_EMULATOR_URL"],
            "COPERNICA_EMULATOR_TOKEN": self.exports["COPERNICA_EMULATOR_TOKEN"],
        }

    def api(self, path: str, **params: Any) -> Any:
        jwt = requests.post(
            self.exports["TAP_COPERNICA_AUTH_URL"],
            data={"access_token": self.exports["TAP_COPERNICA_API_TOKEN"]},
            timeout=10,
        ).text
        reply = requests.get(
            self.exports["TAP_COPERNICA_API_URL"] + path,
            params=params,
            headers={"Authorization": f"Bearer {jwt}"},
            timeout=10,
        )
        reply.raise_for_status()
        return reply.json()


def start(*args: str, launcher: tuple[str, ...] = (EMULATOR,)) -> Served:
    """Start `serve` and read what it prints, up to the last `export` line."""
    process = subprocess.Popen(
        [*launcher, "serve", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    header: list[str] = []
    exports: dict[str, str] = {}
    while "COPERNICA_EMULATOR_TOKEN" not in exports:
        line = process.stdout.readline()
        assert line, f"serve ended early: {process.communicate(timeout=10)}"
        if line.startswith("#"):
            header.append(line.rstrip("\n"))
        else:
            match = re.fullmatch(r"export ([A-Z_]+)=(\S+)\n", line)
            assert match, f"not a comment nor an export line: {line!r}"
            exports[match.group(1)] = match.group(2)
    return Served(process, header, exports)


def stop(served: Served) -> str:
    """SIGTERM; returns what it wrote to stderr."""
    served.process.send_signal(signal.SIGTERM)
    _, stderr = served.process.communicate(timeout=10)
    assert served.process.returncode == 0
    return stderr


@pytest.fixture
def served() -> Iterator[Served]:
    emulator = start("--profiles", "40", "--seed", "11")
    try:
        yield emulator
    finally:
        stop(emulator)


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EMULATOR, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command succeeded and printed one line."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return lines[0]


def listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on `port` (Linux /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, _, port_hex = local.partition(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


# -------------------------------------------------------------------------------- serve
@pytest.mark.parametrize(
    "launcher",
    [(EMULATOR,), (sys.executable, "-m", "copernica_emulator")],
    ids=["console-script", "python-m"],
)
def test_serve_prints_settings_and_binds_to_loopback(launcher: tuple[str, ...]) -> None:
    served = start("--profiles", "5", "--seed", "3", launcher=launcher)
    try:
        exports = served.exports
        assert set(exports) == {
            *PLUGIN_SETTINGS,
            "COPERNICA_EMULATOR_URL",
            "COPERNICA_EMULATOR_TOKEN",
        }
        base = exports["COPERNICA_EMULATOR_URL"]
        port = int(base.rsplit(":", 1)[1])
        for prefix in ("TAP_COPERNICA", "TARGET_COPERNICA"):
            assert exports[f"{prefix}_API_URL"] == f"http://127.0.0.1:{port}/v4"
            assert exports[f"{prefix}_AUTH_URL"] == f"http://127.0.0.1:{port}/authenticate"
            assert exports[f"{prefix}_API_TOKEN"] == "emulator-api-token-3"
        assert exports["COPERNICA_EMULATOR_TOKEN"] == "emulator-api-token-3"
        assert "loopback only" in served.header[0]
        assert "accepts writes" in served.header[0]
        if Path("/proc/net/tcp").exists():
            assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else
        # The printed settings work as they are: a client gets a JWT and reads data.
        assert served.api("/databases")["total"] == 3
        assert one_line(run("status", env=served.env)).startswith(f"emulator at {base} is up")
    finally:
        assert stop(served) == ""


def test_serve_output_can_be_sourced_by_a_shell(tmp_path: Path) -> None:
    served = start("--profiles", "5")
    try:
        env_file = tmp_path / "emulator.env"
        env_file.write_text(
            "\n".join([*served.header, *(f"export {k}={v}" for k, v in served.exports.items())])
        )
        shell = subprocess.run(
            ["sh", "-c", f'. "{env_file}" && echo "$TARGET_COPERNICA_API_URL"'],
            capture_output=True,
            text=True,
            check=True,
        )
        assert shell.stdout.strip() == served.exports["TARGET_COPERNICA_API_URL"]
    finally:
        stop(served)


def test_serve_warns_loudly_when_not_on_loopback() -> None:
    served = start("--profiles", "3", "--host", "0.0.0.0")
    try:
        assert "NOT loopback" in served.header[0]
    finally:
        stderr = stop(served)
    warning = [line for line in stderr.splitlines() if line.startswith("WARNING:")]
    assert len(warning) >= 2
    assert "0.0.0.0, which is not a loopback address" in warning[0]
    assert "--host 127.0.0.1" in stderr


def test_serve_on_a_port_in_use_fails_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [EMULATOR, "serve", "--port", str(port), "--profiles", "2"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "copernica-emulator serve: error: "
        f"cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


# ------------------------------------------------------------------------ data commands
def test_delete_profile(served: Served) -> None:
    assert 7 in served.api("/database/1/profileids")
    assert one_line(run("delete-profile", "7", "9", env=served.env)) == "deleted profiles 7, 9"
    assert 7 not in served.api("/database/1/profileids")
    assert served.api("/profile/7")["removed"]
    gone = run("delete-profile", "7", env=served.env)
    assert gone.returncode == 1
    assert gone.stderr.splitlines() == [
        "copernica-emulator delete-profile: error: profile 7: DELETE /v4/profile/7: "
        "This profile has already been removed"
    ]


def test_modify_profile_moves_modified(served: Served) -> None:
    before = served.api("/profile/8")
    line = one_line(
        run(
            "modify-profile",
            "8",
            "--set",
            "firstname=Annemarie",
            "--set",
            "city=Delft",
            env=served.env,
        )
    )
    after = served.api("/profile/8")
    assert after["fields"]["firstname"] == "Annemarie"
    assert after["fields"]["city"] == "Delft"
    assert after["modified"] > before["modified"]
    assert line == (
        f"set firstname=Annemarie, city=Delft on profile 8; modified moved: "
        f"8 ({before['modified']} -> {after['modified']})"
    )
    again = one_line(run("modify-profile", "8", "--set", "firstname=Annemarie", env=served.env))
    assert again.endswith("already had these values (modified kept): 8")
    assert served.api("/profile/8")["modified"] == after["modified"]


def test_insert_profiles(served: Served) -> None:
    total = served.api("/database/2/profiles")["total"]
    line = one_line(run("insert-profiles", "3", "--database", "newsletter", env=served.env))
    match = re.fullmatch(
        r"inserted 3 profiles into database Newsletter \(2\): IDs (\d+)-(\d+)", line
    )
    assert match, line
    first, last = int(match.group(1)), int(match.group(2))
    assert last - first == 2
    assert served.api("/database/2/profiles")["total"] == total + 3
    for profile_id in range(first, last + 1):
        profile = served.api(f"/profile/{profile_id}")
        assert profile["database"] == "2"
        assert profile["fields"]["email"].endswith("@example.com")
        assert profile["created"] == profile["modified"]


def test_add_field(served: Served) -> None:
    line = one_line(
        run(
            "add-field",
            "--database",
            "Customers",
            "--name",
            "loyalty",
            "--type",
            "integer",
            env=served.env,
        )
    )
    assert re.fullmatch(
        r"added field loyalty \(integer\) to database Customers \(1\): field ID \d+", line
    )
    fields = {f["name"]: f for f in served.api("/database/1/fields")["data"]}
    assert fields["loyalty"]["type"] == "integer"
    assert served.api("/profile/1")["fields"]["loyalty"] == "0"
    line = one_line(
        run(
            "add-field",
            "--database",
            "1",
            "--collection",
            "Orders",
            "--name",
            "coupon",
            "--type",
            "text",
            env=served.env,
        )
    )
    assert line.startswith("added field coupon (text) to collection Orders (")
    twice = run(
        "add-field",
        "--database",
        "Customers",
        "--name",
        "loyalty",
        "--type",
        "integer",
        env=served.env,
    )
    assert twice.returncode == 1
    assert "field 'loyalty' already exists" in twice.stderr


def test_add_events(served: Served) -> None:
    line = one_line(run("add-events", "4", "--kind", "impressions", env=served.env))
    match = re.fullmatch(
        r"added 4 ms impressions stamped (\S+ \S+) on emailings? [\d, ]+: "
        r"event IDs (\d+)-(\d+) \(stream ms_impressions\)",
        line,
    )
    assert match, line
    stamped, first, last = match.group(1), int(match.group(2)), int(match.group(3))
    listed = served.api("/ms/impressions", begintime=stamped, limit=1000)["data"]
    assert [int(event["ID"]) for event in listed] == list(range(first, last + 1))
    assert {event["timestamp"] for event in listed} == {stamped}
    publisher = one_line(
        run(
            "add-events",
            "2",
            "--product",
            "publisher",
            "--kind",
            "clicks",
            "--emailing",
            "1",
            env=served.env,
        )
    )
    assert "added 2 publisher clicks" in publisher
    assert " on emailing 1: " in publisher


def test_control_endpoint_changes_nothing_without_a_token(served: Served) -> None:
    """`/_emulator/events` needs a JWT like the API; `/_emulator/status` only reads."""
    base = served.exports["COPERNICA_EMULATOR_URL"]
    refused = requests.post(f"{base}/_emulator/events", json={"count": 1}, timeout=10)
    assert refused.status_code == 401
    status = requests.get(f"{base}/_emulator/status", timeout=10).json()
    assert status["emulator"] == "copernica"
    assert {db["name"]: db["profiles"] for db in status["databases"]} == {
        "Customers": 40,
        "Newsletter": 20,
        "Legacy": 10,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["delete-profile", "seven"], "argument ID: 'seven' is not a whole number"),
        (["insert-profiles", "0"], "argument count: '0' must be 1 or more"),
        (["add-events", "5", "--kind", "opens"], "argument --kind: invalid choice: 'opens'"),
        (
            ["add-field", "--database", "1", "--name", "x", "--type", "bool"],
            "invalid choice: 'bool'",
        ),
        (["modify-profile", "8"], "the following arguments are required: --set"),
        (["modify-profile", "8", "--set", "firstname"], "expected NAME=VALUE"),
        (["delete-profile", "7", "--url", "ftp://host"], "expected http://HOST:PORT"),
        (["delete-profile", "7", "--url", "UNREACHABLE"], "cannot reach the emulator at"),
        (["status", "--url", "UNREACHABLE"], "start it with `copernica-emulator serve`"),
    ],
)
def test_a_bad_argument_or_an_unreachable_server_is_one_clear_line(
    args: list[str], message: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run(
        *[url if arg == "UNREACHABLE" else arg for arg in args], env={"COPERNICA_EMULATOR_URL": url}
    )
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"copernica-emulator {args[0]}: error: ")
    assert message in lines[0]


def test_refuses_a_server_that_is_not_the_emulator(served: Served) -> None:
    """Writes go nowhere but to an emulator: a URL that answers otherwise is refused."""
    api_only = served.exports["TAP_COPERNICA_API_URL"] + "/database"  # answers, but not /_emulator
    result = run("delete-profile", "7", "--url", api_only)
    assert result.returncode == 1
    assert "does not answer as a Copernica emulator" in result.stderr
    assert not served.api("/profile/7")["removed"]  # still there


# ---------------------------------------------------------------------- the user's story
STORY_STREAMS = ["profiles", "profile_ids", "profiles_customers", "ms_clicks"]


def discover(config_file: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [TAP, "--config", str(config_file), "--discover"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


def properties(catalog: dict[str, Any], stream: str) -> dict[str, Any]:
    entry = next(e for e in catalog["streams"] if e["tap_stream_id"] == stream)
    return dict(entry["schema"]["properties"])


def tap_run(
    served: Served, tmp_path: Path, name: str, state: dict[str, Any] | None
) -> tuple[SyncResult, dict[str, Any]]:
    """One scheduled run as Meltano makes it: discover, select, sync from the state."""
    config_file = tmp_path / "config.json"
    config_file.write_text(
        json.dumps(
            {
                "api_url": served.exports["TAP_COPERNICA_API_URL"],
                "auth_url": served.exports["TAP_COPERNICA_AUTH_URL"],
                "api_token": served.exports["TAP_COPERNICA_API_TOKEN"],
                # The emulator's clock is this machine's: nothing to look back for.
                "lookback_seconds": 0,
            }
        )
    )
    catalog = discover(config_file)
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == []:
                meta["metadata"]["selected"] = entry["tap_stream_id"] in STORY_STREAMS
    catalog_file = tmp_path / f"catalog-{name}.json"
    catalog_file.write_text(json.dumps(catalog))
    argv = [TAP, "--config", str(config_file), "--catalog", str(catalog_file)]
    if state is not None:
        state_file = tmp_path / f"state-{name}.json"
        state_file.write_text(json.dumps(state))
        argv += ["--state", str(state_file)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return SyncResult.parse(proc.stdout, proc.stderr, proc.returncode), catalog


def ids_in(line: str) -> list[int]:
    """The IDs a command's line lists after `IDs `, as `a-b, c`."""
    ids: list[int] = []
    for part in line.rpartition("IDs ")[2].split(" (")[0].split(", "):
        low, _, high = part.partition("-")
        ids += range(int(low), int(high or low) + 1)
    return ids


def test_changes_made_with_the_commands_flow_through_the_tap(
    served: Served, tmp_path: Path
) -> None:
    """The user's story: load, change the running emulator's data, run again from the state."""
    first, first_catalog = tap_run(served, tmp_path, "first", None)
    assert len(first.ids("profiles")) == 70  # 40 + 20 + 10 profiles
    assert 7 in first.ids("profile_ids")
    assert first.ids("profiles_customers") == list(range(1, 41))
    assert first.ids("ms_clicks")
    assert "loyalty" not in properties(first_catalog, "profiles_customers")

    env = served.env
    assert one_line(run("delete-profile", "7", env=env)) == "deleted profile 7"
    one_line(run("modify-profile", "8", "--set", "firstname=Annemarie", env=env))
    inserted = ids_in(one_line(run("insert-profiles", "3", "--database", "Customers", env=env)))
    clicks = ids_in(one_line(run("add-events", "5", "--kind", "clicks", env=env)))
    one_line(
        run(
            "add-field",
            "--database",
            "Customers",
            "--name",
            "loyalty",
            "--type",
            "integer",
            env=env,
        )
    )
    assert len(inserted) == 3
    assert len(clicks) == 5
    time.sleep(1.1)  # events stamped this second belong to the window after it

    second, second_catalog = tap_run(served, tmp_path, "second", first.final_state)
    assert sorted(second.ids("profiles")) == [8, *inserted]
    assert sorted(second.ids("profiles_customers")) == [8, *inserted]
    modified = next(r for r in second.records["profiles"] if r["ID"] == 8)
    assert modified["fields"]["firstname"] == "Annemarie"
    assert sorted(second.ids("profile_ids")) == sorted({*first.ids("profile_ids"), *inserted} - {7})
    assert properties(second_catalog, "profiles_customers")["loyalty"]["type"] in (
        "integer",
        ["integer", "null"],
        ["null", "integer"],
    )
    assert all(record["loyalty"] == 0 for record in second.records["profiles_customers"])
    assert sorted(int(i) for i in second.ids("ms_clicks")) == clicks
