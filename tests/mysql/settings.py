"""The test settings on MariaDB or MySQL (``STEPUP_TEST_MYSQL_URL``), for ``test_on_mysql.py``.

The driver is PyMySQL, as ``MySQLdb`` (Django's MySQL backend imports that
name): it is pure Python, so ``pip install -e '.[dev]'`` needs no C library.
The database's name comes from ``STEPUP_TEST_MYSQL_NAME`` (one per run, set
by the test that starts this suite), so that runs sharing a server never meet;
the tables take the server's default collation, as a user's would.
"""

import os

import dj_database_url
import pymysql

from tests.settings import *  # noqa: F403

pymysql.install_as_MySQLdb()

NAME = os.environ.get("STEPUP_TEST_MYSQL_NAME", "stepup_mysql")

DATABASES = {
    **DATABASES,  # noqa: F405
    "default": {
        **dj_database_url.parse(os.environ["STEPUP_TEST_MYSQL_URL"]),
        "NAME": NAME,
        "TEST": {"NAME": f"test_{NAME}"},
        # Django's default is "read committed"; the server's own, which some sites keep, "repeatable read".
        "OPTIONS": {"isolation_level": os.environ.get("STEPUP_TEST_MYSQL_ISOLATION", "read committed")},
    },
}
