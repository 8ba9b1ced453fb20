"""Real processes for the scale tests: a fresh PostgreSQL database, gunicorn servers, TCP proxies.

Everything here listens on, or connects to, loopback only, and every process
it starts is stopped by the fixture that started it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SETTINGS = "tests.scale.server_settings"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def with_address(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# --- the database ----------------------------------------------------------------------


class FreshDatabase:
    """A PostgreSQL database created for one test run and dropped after it."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"stepup_scale_{os.getpid()}_{secrets.token_hex(3)}"
        self.url = with_database(admin_url, self.name)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def create(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def scalar(self, sql: str) -> Any:
        """The first column of the first row ``sql`` returns, read from this database."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]

    @classmethod
    def drop_stale(cls, admin_url: str) -> list[str]:
        """Drop the databases of earlier runs whose process is gone (a run killed before its teardown)."""
        import psycopg

        with psycopg.connect(admin_url, autocommit=True) as conn:
            names = [row[0] for row in conn.execute("SELECT datname FROM pg_database")]
            stale = [name for name in names if is_stale(name, "stepup_scale_", "_")]
            for name in stale:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        return stale


def is_stale(name: str, prefix: str, separator: str) -> bool:
    """Whether ``name`` is ``<prefix><pid><separator>…`` of a process that no longer runs."""
    if not name.startswith(prefix):
        return False
    pid = name[len(prefix) :].split(separator, 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False

    def scalar(self, sql: str, *params: Any) -> Any:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
            return row[0] if row else None


# --- a proxy that can play a dead server ------------------------------------------------


class TcpProxy:
    """Forwards loopback connections to ``target``; :meth:`cut` kills them all, :meth:`freeze` silences them.

    While cut, a new connection is accepted and closed at once (the client sees
    its server go away) and counted in :attr:`refused`, so a test can tell how
    often the process behind it tried.

    While frozen, the server is there but says nothing, as if its process were
    stopped (``SIGSTOP``): open connections stay open, but what either side
    sends (even its hanging up) is held instead of forwarded, and a new
    connection is accepted but not connected to ``target`` (counted in
    :attr:`held`). :meth:`restore` lets everything held through.

    With :attr:`split_pause` set, every chunk of data sent to a client goes in
    two halves that many seconds apart, as a reply split across TCP segments
    arrives.

    :attr:`from_clients` holds every byte the clients sent that was forwarded
    to ``target``, in order (all connections together), so a test can tell
    which commands a client sent.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.up = True
        self.frozen = False
        self.split_pause = 0.0
        self.accepted = 0
        self.refused = 0
        self.held = 0
        self.from_clients = bytearray()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thawed = threading.Condition()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                with self._lock:
                    self.refused += 1
                _reset(client)
                continue
            if self.frozen:
                with self._lock:
                    self.held += 1
                    self._sockets.add(client)
                threading.Thread(target=self._connect_when_thawed, args=(client,), daemon=True).start()
                continue
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            _reset(client)
            return
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.accepted += 1
            self._sockets.update((client, upstream))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b, b is client), daemon=True).start()

    def _connect_when_thawed(self, client: socket.socket) -> None:
        self._wait_while_frozen()
        with self._lock:
            still_open = client in self._sockets and not self._closed and self.up
            self._sockets.discard(client)
        if still_open:
            self._connect(client)
        else:
            _reset(client)

    def _wait_while_frozen(self) -> None:
        with self._thawed:
            while self.frozen and not self._closed:
                self._thawed.wait()

    def _pump(self, source: socket.socket, sink: socket.socket, to_client: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                self._wait_while_frozen()
                if not data:
                    break
                if not to_client:
                    with self._lock:
                        self.from_clients += data
                pause = self.split_pause
                if to_client and pause and len(data) > 1:
                    sink.sendall(data[: len(data) // 2])
                    time.sleep(pause)
                    data = data[len(data) // 2 :]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with self._lock:
                    self._sockets.discard(s)
                _reset(s)

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        self.up = False
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for s in sockets:
            _reset(s)

    def freeze(self) -> None:
        """Keep every connection open but forward nothing, in either direction, until :meth:`restore`."""
        with self._thawed:
            self.frozen = True

    def restore(self) -> None:
        """End a :meth:`cut` or a :meth:`freeze`: what a freeze held goes through now."""
        with self._thawed:
            self.up = True
            self.frozen = False
            self._thawed.notify_all()

    def close(self) -> None:
        self._closed = True
        with self._thawed:
            self._thawed.notify_all()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()


def _reset(s: socket.socket) -> None:
    # Shut down first: a pump thread may be blocked in recv() on the socket, and close() alone
    # would not end the connection before that recv() returns, that is before the next byte
    # either side sends (a Redis subscriber sends nothing until its next PING).
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        s.close()


# --- processes ------------------------------------------------------------------------


def process_env(base: Mapping[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SCALE_"))}
    env.update(base)
    env.update(extra)
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    env["PYTHONPATH"] = str(ROOT)
    return env


class Worker:
    """A long-lived :mod:`tests.scale.worker` process: one JSON command per line, one answer per line."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        log = log_path.open("wb")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "tests.scale.worker", "--serve"],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()

    def call(self, command: str, args: Mapping[str, Any] | None = None) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"command": command, "args": dict(args or {})}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"worker exited:\n{self.log_path.read_text(errors='replace')[-3000:]}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"worker {command} failed:\n{answer['error']}")
        return answer["result"]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def run_manage(env: Mapping[str, str], *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str
    cookies: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


CSRF = secrets.token_hex(16)  # 32 characters: a CSRF secret Django accepts as cookie and header


@dataclass
class Server:
    """A gunicorn server of the test project, with the demo's deployment settings
    (``project/gunicorn.conf.py``: workers, threads, timeouts) and the test project's WSGI
    application, on a loopback port."""

    name: str
    env: dict[str, str]
    log_path: Path
    workers: int = 1
    threads: int = 8
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Server:
        self.port = free_port()
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "project" / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                str(self.threads),
                "--access-logfile",
                "-",
                "django.core.wsgi:get_wsgi_application()",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 30.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server {self.name} exited:\n{self.log()[-3000:]}")
            with contextlib.suppress(OSError):
                if self.request("GET", "/probe/open/").status == 200:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"server {self.name} did not start:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(
        self,
        method: str,
        path: str,
        *,
        session: str | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Host": "127.0.0.1", "Cookie": f"csrftoken={CSRF}"}
        if session:
            headers["Cookie"] += f"; sessionid={session}"
        body = None
        if method not in ("GET", "HEAD"):
            headers["X-CSRFToken"] = CSRF
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
            headers["Accept"] = "application/json"
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            raw = conn.getresponse()
            cookies = SimpleCookie()
            for name, value in raw.getheaders():
                if name.lower() == "set-cookie":
                    cookies.load(value)
            return Response(
                raw.status,
                {k.lower(): v for k, v in raw.getheaders()},
                raw.read().decode(),
                {name: morsel.value for name, morsel in cookies.items()},
            )
        finally:
            conn.close()

    def stats(self, reset: bool = False) -> Any:
        return self.request("GET", "/probe/stats/" + ("?reset=1" if reset else "")).json()


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    """Start the servers together, wait for all of them, stop them all at the end."""
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


def totp_code(key: str, digits: int = 6, step: int = 30) -> str:
    """The TOTP code of a device's hex ``key`` now."""
    from django_otp.oath import TOTP

    return f"{TOTP(bytes.fromhex(key), step=step, digits=digits).token():0{digits}d}"


def eventually(check: Any, timeout: float, interval: float = 0.02) -> float:
    """Seconds until ``check()`` is true; ``AssertionError`` after ``timeout``."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true after {timeout}s")
        time.sleep(interval)


# --- a subscription's read(), as a request calls it (stepup.notices.SubscribedNotices) -------------


def fails(subscription: Any) -> bool:
    """Whether ``subscription.read()`` raises ``NoticesUnavailable`` (the store then polls the database)."""
    from stepup.exceptions import NoticesUnavailable

    try:
        subscription.read()
    except NoticesUnavailable:
        return True
    return False


def error_of(subscription: Any) -> str:
    """The error ``subscription.read()`` raises now (it must raise)."""
    from stepup.exceptions import NoticesUnavailable

    try:
        subscription.read()
    except NoticesUnavailable as exc:
        return str(exc)
    raise AssertionError("read() did not fail")


class Timed:
    """:func:`fails` of a subscription, keeping how long the slowest ``read()`` took."""

    def __init__(self, subscription: Any) -> None:
        self.subscription = subscription
        self.slowest = 0.0

    def fails(self) -> bool:
        started = time.monotonic()
        try:
            return fails(self.subscription)
        finally:
            self.slowest = max(self.slowest, time.monotonic() - started)


def close_all_checked(subscriptions: list[Any]) -> None:
    """Close every subscription, then check that no retry thread outlived its ``close()``."""
    for subscription in subscriptions:
        subscription.close()
    for subscription in subscriptions:
        retrying = subscription._retrying
        if isinstance(retrying, threading.Thread) and retrying.is_alive():
            retrying.join(5)
            assert not retrying.is_alive(), "a retry thread outlived its subscription's close()"
