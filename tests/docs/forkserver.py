"""A fork server for ``manage.py``: Django starts once, every command runs in a fresh fork.

The documentation's tests run some eighty ``manage.py`` commands. Starting
Django for each costs most of a second; forking a process where it has
already started costs milliseconds, and each command still gets a process of
its own (its own memory, connections and exit code), as on the command line.

Server: ``python forkserver.py SOCKET`` in the project directory, with the
project's environment; prints ``ready`` once Django is set up. The client
(:data:`CLIENT`, written to an executable by :func:`write_client`) sends its
argv, working directory, environment and its stdin/stdout/stderr file
descriptors over the Unix socket; the forked child runs
``execute_from_command_line`` on them and the client exits with the child's
exit code. Shell redirections and pipes around the client work as usual.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback
from pathlib import Path

CLIENT = """\
#!{python} -S
import json, os, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
sock.connect({socket_path!r})
request = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
sys.exit(int(sock.recv(16) or b"1"))
"""


def write_client(path: Path, socket_path: str) -> Path:
    """An executable that runs ``python``-style arguments through the server at ``socket_path``."""
    path.write_text(CLIENT.format(python=sys.executable, socket_path=socket_path))
    path.chmod(0o755)
    return path


def _child(request: dict[str, object], fds: list[int]) -> int:
    from django.core.management import execute_from_command_line

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(str(request["cwd"]))
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update(env)
    argv = request["argv"]
    assert isinstance(argv, list)
    sys.argv = [str(a) for a in argv]
    code = 0
    try:
        execute_from_command_line(sys.argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _warm_up() -> None:
    """Do once, before forking, the work every command repeats: the URLconf and the system checks."""
    from django.core import checks
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports and caches the URLconf
    checks.run_checks()


def serve(socket_path: str) -> None:
    sys.path.insert(0, os.getcwd())
    import django

    django.setup()
    _warm_up()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(socket_path)
    server.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                server.close()
                conn.close()
                code = _child(json.loads(message), fds)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        conn.sendall(str(os.waitstatus_to_exitcode(status)).encode())
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
