"""The ``stepup`` pytest plugin (entry point ``pytest11``): the ``stepup_verified`` fixture.

Importing this module needs no configured Django: ``stepup.testing`` is
imported inside the fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def stepup_verified() -> Callable[..., Any]:
    """:func:`stepup.testing.stepup_verified`, the context manager::

    def test_happy_path(client, user, stepup_verified):
        client.force_login(user)
        with stepup_verified(client, user, factor="totp"):
            assert client.post("/billing/").status_code == 200
    """
    from stepup.testing import stepup_verified as verified

    return verified
