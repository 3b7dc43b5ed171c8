"""Response bodies read in one read (`copernica_api.bodies`): the same bytes and the same
errors as requests' own reading, over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from copernica_api.bodies import WholeBodyAdapter, read_bodies_whole
from copernica_emulator import Emulator


def jwt_for(emu: Emulator) -> str:
    answer = requests.post(emu.auth_url, data={"access_token": emu.api_token}, timeout=10)
    answer.raise_for_status()
    return answer.text.strip()


def test_a_body_read_whole_is_the_body_requests_reads() -> None:
    with Emulator(seed=5, profiles_per_database=300) as emu:
        headers = {"Authorization": f"Bearer {jwt_for(emu)}"}
        url = f"{emu.api_url}/database/1/profiles"
        params = {"limit": 300}
        with requests.Session() as plain, read_bodies_whole(requests.Session()) as whole:
            assert isinstance(whole.adapters["https://"], WholeBodyAdapter)
            expected = plain.get(url, params=params, headers=headers, timeout=10)
            got = whole.get(url, params=params, headers=headers, timeout=10)
            assert len(got.json()["data"]) == 300
            assert got.content == expected.content
            # A caller that streams still reads the body itself.
            streamed = whole.get(url, params=params, headers=headers, timeout=10, stream=True)
            assert streamed.raw.read(decode_content=True) == expected.content
            # Mounted once: a second call keeps the adapters (and their connection pools).
            adapter = whole.adapters["http://"]
            assert read_bodies_whole(whole).adapters["http://"] is adapter


class _CutShort(BaseHTTPRequestHandler):
    """Promises 1,000 bytes, sends 10, and closes the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b'{"data": [')
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def cut_short_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CutShort)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_body_cut_short_raises_what_requests_raises_so_it_is_retried(
    cut_short_url: str,
) -> None:
    with requests.Session() as plain, pytest.raises(requests.exceptions.ChunkedEncodingError):
        plain.get(cut_short_url, timeout=10)
    whole = read_bodies_whole(requests.Session())
    with whole, pytest.raises(requests.exceptions.ChunkedEncodingError):
        whole.get(cut_short_url, timeout=10)
