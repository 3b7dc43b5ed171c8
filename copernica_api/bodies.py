"""Response bodies read in large chunks.

requests reads a body (`Response.content`) in chunks of `requests.models.CONTENT_CHUNK_SIZE`,
10 KiB, each through urllib3's decoder and a generator: for a page of 1,000 profiles (about
half a megabyte) some fifty reads, and with several requests in flight each of them waits
for the interpreter lock again. In chunks of 1 MiB a page is one or two reads. Measured under
100 ms latency (`bench/`): 3-4 % faster with 4 requests in flight, up to a tenth with 8 for a
typed stream. Everything else stays requests' own: when the body is read (after the headers,
so `Response.elapsed` still times the answer), redirects, and the errors a broken body raises
(a body cut short is a `ChunkedEncodingError`, retried); a chunk bounds what one read asks
for, also when a server announces a false, huge `Content-Length`.
"""

from __future__ import annotations

import requests.models

#: The chunk size the tap reads bodies in.
LARGE_CHUNK = 1 << 20


def read_bodies_in_large_chunks() -> None:
    """Have requests read response bodies in `LARGE_CHUNK` chunks, in this process (the
    tap's: its pages are large; never smaller than requests' own size)."""
    requests.models.CONTENT_CHUNK_SIZE = max(requests.models.CONTENT_CHUNK_SIZE, LARGE_CHUNK)
