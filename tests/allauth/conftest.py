"""tests/allauth: ``suite/`` needs ``allauth.mfa`` installed, so it runs only in the child pytest
that ``test_on_allauth.py`` starts with ``--ds=tests.allauth.settings``."""

from django.apps import apps

collect_ignore = [] if apps.is_installed("allauth.mfa") else ["suite"]
