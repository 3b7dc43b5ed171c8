"""Response bodies read in large chunks (`copernica_api.bodies`): the same bytes, the same
timing of `Response.elapsed` and the same errors as requests' own reading, over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import urllib3.response

from copernica_api.bodies import LARGE_CHUNK, read_bodies_in_large_chunks
from copernica_emulator import Emulator


def jwt_for(emu: Emulator) -> str:
    answer = requests.post(emu.auth_url, data={"access_token": emu.api_token}, timeout=10)
    answer.raise_for_status()
    return answer.text.strip()


@pytest.fixture
def large_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The setting for this test only (the tap sets it for its whole process)."""
    monkeypatch.setattr(requests.models, "CONTENT_CHUNK_SIZE", requests.models.CONTENT_CHUNK_SIZE)
    read_bodies_in_large_chunks()


def test_a_page_is_read_in_one_or_two_reads_and_is_the_same_body(
    large_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Any] = []
    read = urllib3.response.HTTPResponse.read

    def counted(self: urllib3.response.HTTPResponse, *args: Any, **kwargs: Any) -> bytes:
        reads.append(args[:1] or kwargs.get("amt"))
        return read(self, *args, **kwargs)

    with Emulator(seed=5, profiles_per_database=1000) as emu:
        headers = {"Authorization": f"Bearer {jwt_for(emu)}"}
        url = f"{emu.api_url}/database/1/profiles"
        params = {"limit": 1000}
        with requests.Session() as session:
            monkeypatch.setattr(urllib3.response.HTTPResponse, "read", counted)
            got = session.get(url, params=params, headers=headers, timeout=10)
            monkeypatch.setattr(urllib3.response.HTTPResponse, "read", read)
            monkeypatch.setattr(requests.models, "CONTENT_CHUNK_SIZE", 10 * 1024)
            expected = session.get(url, params=params, headers=headers, timeout=10)
    assert len(got.content) > 4 * LARGE_CHUNK // 10  # a page of 1,000 profiles
    assert got.content == expected.content
    assert len(got.json()["data"]) == 1000
    assert 1 <= len(reads) <= 3  # the data, and the read that finds the end


class _Slow(BaseHTTPRequestHandler):
    """Answers at once, then sends the body 1 s later (`/cut` sends 10 of 1,000 bytes)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000" if self.path == "/cut" else "2")
        self.end_headers()
        self.wfile.flush()
        time.sleep(1.0)  # far above the bound below: a busy machine stalls the client too
        self.wfile.write(b'{"data": [' if self.path == "/cut" else b"{}")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def slow_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_elapsed_still_times_the_answer_not_the_body(large_chunks: None, slow_server: str) -> None:
    """The tap measures the API's latency by `Response.elapsed` (until the headers): a body
    that takes long to arrive does not count as a slow answer."""
    response = requests.get(f"{slow_server}/", timeout=10)
    assert response.json() == {}
    assert response.elapsed.total_seconds() < 0.8


def test_a_body_cut_short_raises_what_requests_raises_so_it_is_retried(
    large_chunks: None, slow_server: str
) -> None:
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{slow_server}/cut", timeout=10)
