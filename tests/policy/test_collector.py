"""The garbage collector paused while files are read: always given back as it was found."""

from __future__ import annotations

import gc

import pytest

from stepup.policy.collector import collector_paused
from stepup.policy.loader import load_text


def test_paused_inside_and_enabled_again_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_enabled_again_after_an_error() -> None:
    with pytest.raises(ZeroDivisionError), collector_paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()


def test_left_off_when_it_was_off_before() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
        load_text("version: 1\npolicies: []\n", "p.yaml")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_loading_a_broken_file_gives_the_collector_back() -> None:
    policy_file = load_text("version: 1\npolicies: [\n", "p.yaml")
    assert policy_file.errors
    assert gc.isenabled()
