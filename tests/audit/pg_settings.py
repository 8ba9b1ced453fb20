"""The test settings on PostgreSQL (``STEPUP_TEST_DATABASE_URL``), for ``test_postgres.py``.

The database gets its own name so that it never collides with other suites
using the same server.
"""

import os

import dj_database_url

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        **dj_database_url.parse(os.environ["STEPUP_TEST_DATABASE_URL"]),
        "NAME": "stepup_audit",
        "TEST": {"NAME": "test_stepup_audit"},
    }
}
