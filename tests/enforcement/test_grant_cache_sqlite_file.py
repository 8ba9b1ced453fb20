"""On SQLite, kept grants follow ``PRAGMA data_version`` (:func:`stepup.grant_cache.generation`).

Against a real database file, outside pytest-django's test database (a
connection to a database of its own): another process's commit changes the
generation, this connection's own commit does not.
"""

from __future__ import annotations

import sqlite3

from stepup import grant_cache


def test_on_a_sqlite_file_a_commit_by_another_process_changes_the_generation(
    tmp_path, monkeypatch, django_db_blocker
):
    """What a server with several worker processes on one SQLite file relies on."""
    import subprocess
    import sys

    from django.db import connections, router

    path = tmp_path / "shared.sqlite3"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    alias = "grants_file"
    connections.settings[alias] = connections.configure_settings(
        {
            "default": connections["default"].settings_dict,
            alias: {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)},
        }
    )[alias]
    monkeypatch.setattr(router, "db_for_read", lambda model, **hints: alias)
    django_db_blocker.unblock()
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")  # connected, as the request's earlier queries leave it
        first = grant_cache.generation()
        assert first is not None and grant_cache.generation() == first
        with connections[alias].cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")  # this connection's own commit (autocommit)
        assert grant_cache.generation() == first

        script = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('INSERT INTO t VALUES (2)'); c.commit()"
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=30)
        assert grant_cache.generation() != first
    finally:
        django_db_blocker.restore()
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]
