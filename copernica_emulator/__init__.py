"""Copernica REST API v4 emulator for tests (stdlib only).

    with Emulator(seed=42, profiles_per_database=200) as emu:
        emu.api_url, emu.auth_url, emu.api_token   # where and how to connect
        emu.store                                  # seeded data + mutation API
        emu.faults.add("html503", path=r"/profiles$", times=1)
        emu.on_response(lambda log: ...)           # runs before each answer is written
        emu.requests                               # RequestLog of everything handled

CLI: ``copernica-emulator serve --port 8765 [--profiles N] [--seed S]`` prints the plugins'
settings; ``copernica-emulator delete-profile 7`` (``modify-profile``, ``insert-profiles``,
``add-events``, ``add-field``) changes the running emulator's data (see ``cli.py``).
``python -m copernica_emulator --port 8765 [--profiles N] [--seed S]`` is the older form (its
``api_url``/``auth_url``/``api_token`` lines are parsed by scripts).
"""

from .emulator import Emulator
from .faults import FAULT_KINDS, FaultPlan
from .messages import RequestLog
from .model import ApiError
from .store import Store

__all__ = ["FAULT_KINDS", "ApiError", "Emulator", "FaultPlan", "RequestLog", "Store"]
