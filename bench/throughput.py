"""(b) Throughput under gunicorn: the protected route with a valid grant against ``otp_required``.

gunicorn runs :mod:`bench.wsgi` with 2 sync workers (:mod:`bench.gunicorn_conf`)
on the run's database, with Redis carrying policy-change notices when a Redis
URL is given, or PostgreSQL's LISTEN/NOTIFY with ``--notices database``. A
load generator in this process (``CLIENTS`` threads on loopback, one
connection per request, as a sync worker wants) sends one signed-in user's
requests to each route in turn, ``ROUNDS`` times ``SECONDS`` each,
alternating which goes first; requests per second are summed per route. The
generator shares the 2 CPUs with the workers, alike for both routes. Run as
``python -m bench.throughput [--quick] [--redis URL | --notices database]``
with ``BENCH_DATABASE_URL`` set; prints the figures as JSON (run by
``bench/run.py``).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 8
ROUTES = {"require_stepup": "/bench/protected/", "otp_required": "/bench/protected-otp/"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str, cookie: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Cookie": cookie, "Connection": "close"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _load(port: int, path: str, cookie: str, seconds: float) -> tuple[int, int]:
    """(answered 200, anything else) within ``seconds``, from ``CLIENTS`` threads."""
    done = [0, 0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        ok = bad = 0
        while time.perf_counter() < stop_at:
            try:
                status = _get(port, path, cookie)
            except OSError:
                status = 0
            if status == 200:
                ok += 1
            else:
                bad += 1
        with lock:
            done[0] += ok
            done[1] += bad

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0], done[1]


def _signed_in_cookie() -> str:
    from django.conf import settings
    from django.test import Client

    from bench import stack

    user = stack.setup()
    client = stack.signed_in(Client(), user)
    _signed_in.append(client)  # its grant stays until the end (see stack.signed_in)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


_signed_in: list[Any] = []


def run(*, quick: bool, redis_url: str | None, notices: str = "cache") -> dict[str, Any]:
    cookie = _signed_in_cookie()
    from django.db import connections

    connections.close_all()
    port = _free_port()
    env = {**os.environ, "GUNICORN_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
    env["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    if redis_url:
        env["BENCH_REDIS_URL"] = redis_url
        env["BENCH_REDIS_PREFIX"] = f"stepup-bench-{os.getpid()}"
    env["BENCH_NOTICES"] = notices
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.Popen(
        [str(gunicorn), "-c", str(ROOT / "bench" / "gunicorn_conf.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if all(_get(port, path, cookie) == 200 for path in ROUTES.values()):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("gunicorn did not answer 200 on both routes")
            time.sleep(0.2)
        _load(port, ROUTES["require_stepup"], cookie, 2.0)  # warm both workers
        _load(port, ROUTES["otp_required"], cookie, 2.0)
        rounds, seconds = (2, 3.0) if quick else (3, 8.0)
        totals = {name: [0, 0] for name in ROUTES}
        for i in range(rounds):
            names = list(ROUTES) if i % 2 == 0 else list(reversed(ROUTES))
            for name in names:
                ok, bad = _load(port, ROUTES[name], cookie, seconds)
                totals[name][0] += ok
                totals[name][1] += bad
        elapsed = rounds * seconds
    finally:
        server.send_signal(signal.SIGTERM)  # a graceful exit: the workers write their buffered log rows
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return {
        "rps": {name: ok / elapsed for name, (ok, _) in totals.items()},
        "errors": {name: bad for name, (_, bad) in totals.items()},
        "clients": CLIENTS,
        "seconds": elapsed,
        "notices": "LISTEN/NOTIFY" if notices == "database" else "Redis" if redis_url else "none",
        "allowed_rows": _allowed_rows(),
    }


def _allowed_rows() -> int:
    """Allowed decisions the workers logged (after their graceful exit): the log kept up."""
    from stepup.models import DecisionLog

    return DecisionLog.objects.filter(event="allowed").count()


def main(argv: list[str]) -> None:
    import logging

    import django
    from django.core.management import call_command

    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    django.setup()
    logging.getLogger("stepup").setLevel(logging.ERROR)
    call_command("migrate", verbosity=0)
    redis_url = argv[argv.index("--redis") + 1] if "--redis" in argv else None
    notices = argv[argv.index("--notices") + 1] if "--notices" in argv else "cache"
    result = run(quick="--quick" in argv, redis_url=redis_url, notices=notices)
    for client in _signed_in:
        client.stepup_verified.__exit__(None, None, None)
    from django.db import connections

    connections.close_all()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
