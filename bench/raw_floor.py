"""The raw floor: a plain `requests` loop with the standard `json` module.

Authenticates once, pages `GET /database/{id}/profiles` by keyset (`fields[]=id>X`,
`orderby=id`, `limit=1000`, `total=false`), and writes one Singer RECORD line per profile
with `json.dumps`, then a final STATE line. No SDK, no schema work, no typing: the least a
tap has to do, so a tap's records/s can be read as a fraction of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

import requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--auth-url", required=True)
    parser.add_argument("--api-token", required=True)
    parser.add_argument("--database", default="1")
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args(argv)

    session = requests.Session()
    auth = session.post(args.auth_url, data={"access_token": args.api_token}, timeout=60)
    auth.raise_for_status()
    session.headers["Authorization"] = f"Bearer {auth.text.strip()}"
    out = sys.stdout
    write = out.write
    dumps = json.dumps
    stream = "profiles"
    write(
        dumps(
            {
                "type": "SCHEMA",
                "stream": stream,
                "schema": {"type": "object"},
                "key_properties": ["ID"],
            }
        )
        + "\n"
    )
    url = f"{args.api_url}/database/{args.database}/profiles"
    after, latest = 0, ""
    while True:
        params = {
            "fields[]": f"id>{after}",
            "orderby": "id",
            "start": 0,
            "limit": args.page_size,
            "total": "false",
        }
        response = session.get(url, params=params, timeout=120)
        response.raise_for_status()
        rows = json.loads(response.content)["data"]
        extracted = datetime.now(timezone.utc).isoformat()
        for row in rows:
            write(
                dumps(
                    {"type": "RECORD", "stream": stream, "record": row, "time_extracted": extracted}
                )
                + "\n"
            )
            latest = max(latest, row.get("modified") or "")
        if len(rows) < args.page_size:
            break
        after = int(rows[-1]["ID"])
    write(dumps({"type": "STATE", "value": {"bookmarks": {stream: {"modified": latest}}}}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
