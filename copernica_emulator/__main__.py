"""``python -m copernica_emulator --port 8765 [--profiles N] [--seed S]``: serve until stopped.

``python -m copernica_emulator COMMAND ...`` (``serve``, ``delete-profile``, ...) runs the
``copernica-emulator`` console script's commands instead (see ``cli.py``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from . import cli
from .emulator import Emulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m copernica_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--profiles", type=int, default=200, help="profiles per database")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--timezone", default="Europe/Amsterdam")
    parser.add_argument("--jwt-lifetime", type=float, default=86400)
    parser.add_argument("--auth-response", choices=("text", "json"), default="text")
    parser.add_argument("--expired-status", type=int, choices=(400, 401), default=401)
    parser.add_argument("--no-shuffle-ties", action="store_true")
    parser.add_argument(
        "--touch",
        type=int,
        default=0,
        help="at start, change this many Customers profiles (a rerun then has changes to read)",
    )
    return parser.parse_args(argv)


def touch_profiles(emulator: Emulator, count: int) -> None:
    """Change `count` profiles now, as a marketer would between two scheduled runs."""
    for profile in emulator.store.profiles("Customers")[:count]:
        emulator.store.update_profile(int(profile["ID"]), {"city": f"Touched {profile['ID']}"})


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments and arguments[0] in cli.COMMANDS:
        return cli.main(arguments)
    args = parse_args(arguments)
    emulator = Emulator(
        seed=args.seed,
        profiles_per_database=args.profiles,
        jwt_lifetime=args.jwt_lifetime,
        timezone=args.timezone,
        auth_response=args.auth_response,
        expired_status=args.expired_status,
        shuffle_ties=not args.no_shuffle_ties,
        host=args.host,
        port=args.port,
    )
    stopped = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    emulator.start()
    touch_profiles(emulator, args.touch)
    print(f"api_url   {emulator.api_url}")
    print(f"auth_url  {emulator.auth_url}")
    print(f"api_token {emulator.api_token}")
    sys.stdout.flush()
    while not stopped.wait(0.5):
        pass
    emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
