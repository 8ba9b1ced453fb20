"""The library's test views (tests/verification/outcome_urls.py) served by ``runserver`` for Chromium.

The test settings on a SQLite file named by ``LIBRARY_SQLITE_PATH``: the browser
tests run this in subprocesses (``migrate``, a setup script, ``runserver``), as
they run the demo, so no ORM call happens in the test process beside Playwright.
"""

import os

from tests.settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["LIBRARY_SQLITE_PATH"]}}
ROOT_URLCONF = "tests.verification.outcome_urls"
LOGIN_REDIRECT_URL = "/files/"
DEBUG = True  # runserver serves stepup's static files (the done page's ES module) only in debug mode
