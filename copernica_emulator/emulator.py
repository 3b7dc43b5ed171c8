"""The ``Emulator``: seeded store + auth service + REST v4 API on a local port."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from types import TracebackType

from .app import App
from .auth import AuthService
from .faults import FaultPlan
from .jwt import TokenSigner
from .messages import RequestLog
from .seed import populate
from .server import EmulatorServer
from .store import Store

ResponseHook = Callable[[RequestLog], object]

# Seed data ends just before midnight (UTC) of the day this module was imported:
# recent relative to "now", yet identical for every emulator built in one process.
PROCESS_ANCHOR = float(int(time.time()) // 86400 * 86400)


class Emulator:
    """A Copernica REST v4 look-alike for tests. Not started until ``start()``."""

    def __init__(
        self,
        seed: int = 42,
        profiles_per_database: int = 200,
        jwt_lifetime: float = 86400,
        timezone: str = "Europe/Amsterdam",
        auth_response: str = "text",
        expired_status: int = 401,
        shuffle_ties: bool = True,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed_anchor: float | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        if expired_status not in (400, 401):
            raise ValueError("expired_status must be 400 or 401")
        self.seed = seed
        self.store = Store(timezone, seed=seed)
        populate(
            self.store,
            seed=seed,
            profiles_per_database=profiles_per_database,
            anchor=PROCESS_ANCHOR if seed_anchor is None else seed_anchor,
        )
        self.api_token = f"emulator-api-token-{seed}"
        self.faults = FaultPlan()
        self.requests: list[RequestLog] = []
        self.hook_errors: list[BaseException] = []
        #: requests whose body never fully arrived (dropped unhandled, as a real server does)
        self.incomplete_requests = 0
        self._signer = TokenSigner(jwt_lifetime)
        self.app = App(
            store=self.store,
            auth=AuthService(self.api_token, self._signer, auth_response),
            signer=self._signer,
            faults=self.faults,
            expired_status=expired_status,
            shuffle_ties=shuffle_ties,
            seed=seed,
        )
        self._host, self._port = host, port
        #: (certificate file, key file): serve HTTPS with them
        self._tls = tls
        self._hooks: list[ResponseHook] = []
        self._log_lock = threading.Lock()
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Emulator:
        if self._server is not None:
            return self
        server = EmulatorServer((self._host, self._port), self)
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._tls)
            # The handshake runs in the handler thread, so a refused one stops only itself.
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self.app.api_url = self.api_url
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"copernica-emulator-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --------------------------------------------------------------- addresses
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v4"

    @property
    def auth_url(self) -> str:
        return f"{self.base_url}/authenticate"

    @property
    def tokens_issued(self) -> int:
        return self._signer.issued

    # ------------------------------------------------------------------- hooks
    def on_response(self, hook: ResponseHook) -> ResponseHook:
        """Call ``hook(log)`` for every request, after its answer is final but before it
        is written (so the next request of any client sees the hook's changes)."""
        self._hooks.append(hook)
        return hook

    def record(self, log: RequestLog) -> None:
        with self._log_lock:
            self.requests.append(log)
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook(log)
            except Exception as error:  # a broken hook must not break the server
                self.hook_errors.append(error)
