"""The ``stepup`` pytest plugin (entry point ``pytest11``): the ``stepup_verified`` fixture.

Importing this module needs no configured Django: ``stepup.testing`` is
imported inside the fixture. Every test starts and ends with an empty
buffer of allowed decision-log rows (:mod:`stepup.allowed_log`), so that no
row a test left unwritten lands in another test's database.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def _discard_buffered_rows() -> None:
    module = sys.modules.get("stepup.allowed_log")  # never imported: nothing was buffered
    if module is not None:
        module.discard()


@pytest.fixture(autouse=True)
def _stepup_decision_log_buffer() -> Iterator[None]:
    _discard_buffered_rows()
    yield
    _discard_buffered_rows()


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
