"""Brute force and replay: guessing codes, and using one code twice.

Two limits hold every attempt, wherever it comes from: django-otp's throttle on
the device, and stepup's per-user lockout (``USER_FAILURE_LIMIT`` failures in
a row, across sessions, client IPs, the HTML form and the API). A code is
checked only in the one canonical form the device shows, and works once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stepup.models import DecisionLog, Grant, UserState
from tests.clients import CredentialClient
from tests.security.conftest import (
    API_VERIFY,
    BACKUP_CODES,
    LOCK_WAITS,
    VERIFY,
    code,
    fresh_client,
    wait_for_a_lock_wait,
    wrong_code,
)
from tests.security.test_routing import BILLING, BILLING_EDIT, challenged
from tests.shop.models import BillingProfile, Transfer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced_policies")]

FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.fixture
def no_device_throttle(settings: Any) -> None:
    """Turn django-otp's per-device throttle off, to see stepup's per-user lockout alone."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


def verified_anywhere() -> bool:
    return Grant.objects.exists()


# --- guessing from many places ------------------------------------------------------------


def _form(user: Any, device: TOTPDevice, token: str, ip: str) -> int:
    return fresh_client(user).post(VERIFY, {"token": token}, REMOTE_ADDR=ip).status_code


def _session_api(user: Any, device: TOTPDevice, token: str, ip: str) -> int:
    api = APIClient(REMOTE_ADDR=ip)
    api.force_login(user)
    return api.post(API_VERIFY, {"token": token}, format="json").status_code


def _token_api(user: Any, device: TOTPDevice, token: str, ip: str) -> int:
    api = APIClient(REMOTE_ADDR=ip)
    key = Token.objects.get_or_create(user=user)[0].key
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api.post(API_VERIFY, {"token": token}, format="json").status_code


CHANNELS: list[Callable[[Any, TOTPDevice, str, str], int]] = [_form, _session_api, _token_api]


@pytest.mark.usefixtures("no_device_throttle")
def test_guessing_from_new_sessions_ips_form_and_api_locks_the_user_out(
    user: Any, totp: TOTPDevice, settings: Any
) -> None:
    limit = 10
    assert settings.STEPUP.get("USER_FAILURE_LIMIT", 10) == limit
    for attempt in range(limit):
        channel = CHANNELS[attempt % len(CHANNELS)]
        status = channel(user, totp, wrong_code(totp), f"203.0.113.{attempt + 1}")
        assert status in (200, 400, 429)
    state = UserState.objects.get(user=user)
    assert state.locked_until is not None
    # Now even the right code, from yet another session, IP and channel, is refused.
    for channel in CHANNELS:
        assert channel(user, totp, code(totp), "192.0.2.200") == 429
    assert not verified_anywhere()
    assert DecisionLog.objects.filter(event="failed").count() >= limit
    assert DecisionLog.objects.filter(event="locked").exists()
    browser = fresh_client(user)
    assert challenged(browser.post(BILLING_EDIT, BILLING))
    assert not BillingProfile.objects.exists()


@pytest.mark.usefixtures("no_device_throttle")
def test_logging_out_and_in_again_does_not_reset_the_lockout(user: Any, totp: TOTPDevice) -> None:
    browser = fresh_client(user)
    for _ in range(10):
        browser.post(VERIFY, {"token": wrong_code(totp)})
    browser.post("/accounts/logout/")
    browser.force_login(user)
    assert browser.post(VERIFY, {"token": code(totp)}).status_code == 429
    assert not verified_anywhere()


def test_the_device_throttle_holds_across_sessions(user: Any, totp: TOTPDevice, settings: Any) -> None:
    settings.OTP_TOTP_THROTTLE_FACTOR = 60
    assert fresh_client(user).post(VERIFY, {"token": wrong_code(totp)}).status_code == 200
    assert fresh_client(user).post(VERIFY, {"token": code(totp)}, REMOTE_ADDR="192.0.2.9").status_code == 429
    assert _token_api(user, totp, code(totp), "192.0.2.10") == 429
    assert not verified_anywhere()


def test_success_on_one_device_does_not_reset_anothers_throttle(
    user: Any, totp: TOTPDevice, backup: StaticDevice, settings: Any
) -> None:
    settings.OTP_TOTP_THROTTLE_FACTOR = 60
    browser = fresh_client(user)
    for _ in range(3):
        browser.post(VERIFY, {"device": totp.persistent_id, "token": wrong_code(totp)})
    totp.refresh_from_db()
    failures = totp.throttling_failure_count
    assert failures >= 1
    ok = browser.post(VERIFY, {"device": backup.persistent_id, "token": "alpha111"})
    assert ok.status_code == 303
    totp.refresh_from_db()
    assert totp.throttling_failure_count == failures
    again = fresh_client(user).post(VERIFY, {"device": totp.persistent_id, "token": code(totp)})
    assert again.status_code == 429
    assert set(Grant.objects.values_list("kind", flat=True)) == {"static"}


# --- odd encodings of a right code ---------------------------------------------------------


def odd_forms(valid: str) -> list[str]:
    return [
        valid.translate(FULLWIDTH),
        valid.translate(ARABIC_INDIC),
        f"{valid[:3]}_{valid[3:]}",
        f"+{valid}",
        f"0{valid}",
        f"{valid}0",
        f"{valid[:3]}\n{valid[3:]}",
        f"{valid[:3]}\t{valid[3:]}",
        f"{valid}\x00",
        f"\x00{valid}",
        f"{valid}\u200b",
        f"{valid[:3]}\u00a0{valid[3:]}",
        f"{valid}.0",
        f"{valid}e0",
        f"{int(valid):#x}",
        valid * 2,
        valid + " " * 5000,
        "9" * 100_000,
    ]


@pytest.mark.parametrize("index", range(18))
@pytest.mark.parametrize("channel", ["form", "api"])
def test_odd_encodings_of_the_right_code_are_refused(
    attacker: Client, totp: TOTPDevice, index: int, channel: str
) -> None:
    token = odd_forms(code(totp))[index]
    if channel == "form":
        response = attacker.post(VERIFY, {"token": token})
        assert response.status_code == 200
    else:
        response = attacker.post(API_VERIFY, {"token": token}, content_type="application/json")
        assert response.status_code == 400
    assert not verified_anywhere()


@pytest.mark.parametrize("token", [123456, 123456.0, ["123456"], {"token": "123456"}, None, True])
def test_non_string_tokens_are_refused_by_the_api(attacker: Client, totp: TOTPDevice, token: Any) -> None:
    valid = code(totp)
    if isinstance(token, (int, float)) and not isinstance(token, bool):
        token = type(token)(int(valid))
    response = attacker.post(API_VERIFY, {"token": token}, content_type="application/json")
    assert response.status_code == 400
    assert not verified_anywhere()


@pytest.mark.parametrize("spelling", ["{c}", " {c} ", "{a} {b}", "{c}\n", "\t{c}\r\n"])
def test_the_documented_spellings_of_a_code_are_accepted(
    attacker: Client, totp: TOTPDevice, spelling: str
) -> None:
    """Surrounding whitespace and a space in the middle, as people type or paste codes."""
    valid = code(totp)
    token = spelling.format(c=valid, a=valid[:3], b=valid[3:])
    assert attacker.post(VERIFY, {"token": token}).status_code == 303
    assert verified_anywhere()


def test_a_backup_code_is_checked_exactly(attacker: Client, user: Any, backup: StaticDevice) -> None:
    for spelling in ("ALPHA111", "alpha111\x00", "alpha_111", "alpha111" + "\u200b"):
        attacker.post(VERIFY, {"device": backup.persistent_id, "token": spelling})
    assert not verified_anywhere()
    assert backup.token_set.count() == len(BACKUP_CODES)


# --- replay: the same code twice -------------------------------------------------------------


def test_a_totp_code_works_once(user: Any, totp: TOTPDevice) -> None:
    """A code seen over the victim's shoulder (or in a log) is dead once the victim used it."""
    valid = code(totp)
    victim, thief = fresh_client(user), fresh_client(user)
    assert victim.post(VERIFY, {"token": valid}).status_code == 303
    assert thief.post(VERIFY, {"token": valid}).status_code == 200
    assert Grant.objects.count() == 1
    assert challenged(thief.post(BILLING_EDIT, BILLING))
    assert not BillingProfile.objects.exists()


def test_an_older_code_does_not_work_after_a_newer_one(user: Any, totp: TOTPDevice) -> None:
    victim, thief = fresh_client(user), fresh_client(user)
    older = code(totp, -1)
    assert victim.post(VERIFY, {"token": code(totp)}).status_code == 303
    assert thief.post(VERIFY, {"token": older}).status_code == 200
    assert Grant.objects.count() == 1


def test_a_backup_code_works_once(user: Any, backup: StaticDevice) -> None:
    victim, thief = fresh_client(user), fresh_client(user)
    assert victim.post(VERIFY, {"token": "alpha111"}).status_code == 303
    assert thief.post(VERIFY, {"token": "alpha111"}).status_code == 200
    assert thief.post(API_VERIFY, {"token": "alpha111"}, content_type="application/json").status_code in (
        400,
        429,
    )
    assert Grant.objects.count() == 1


def test_a_single_request_grant_authorizes_one_transfer_once(user: Any, totp: TOTPDevice) -> None:
    """``max_age: 0``: the verification is bound to one transfer, and used up by it."""
    TRANSFER = {"amount": "5000.00", "account": "DE89370400440532013000"}
    browser = fresh_client(user)
    refused = browser.post("/transfers/", TRANSFER)
    assert challenged(refused)
    assert browser.post(refused["Location"], {"token": code(totp)}).status_code == 200  # confirm page
    other_account = {**TRANSFER, "account": "GB82WEST12345698765432"}
    other_amount = {**TRANSFER, "amount": "5000.01"}
    same_but_respelled = {**TRANSFER, "amount": "5000.0"}
    for attempt in (other_account, other_amount, same_but_respelled):
        assert challenged(browser.post("/transfers/", attempt))
    assert not Transfer.objects.exists()
    assert browser.post("/transfers/", TRANSFER).status_code == 302
    assert challenged(browser.post("/transfers/", TRANSFER))
    assert Transfer.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_backup_code_spent_while_an_attempt_waits_for_the_lock_is_refused(
    user: Any, backup: StaticDevice
) -> None:
    """The waiting attempt reads the codes as they are once it holds the lock, not as they were.

    Under REPEATABLE READ (a MySQL or MariaDB server's own default, when a site
    keeps it), a transaction's plain reads see the snapshot of its first read,
    taken here before the wait: the spent code would still be there.
    """
    if connection.vendor not in LOCK_WAITS:
        pytest.skip("SQLite has no row locks; tests/mysql runs this on MariaDB")
    UserState.objects.get_or_create(user=user)
    thief = fresh_client(user, raise_request_exception=False)
    results: list[Any] = []

    def attempt() -> None:
        try:
            results.append(thief.post(VERIFY, {"device": backup.persistent_id, "token": "alpha111"}))
        finally:
            connection.close()

    waiting = threading.Thread(target=attempt)
    with transaction.atomic():  # the victim's verification, holding the user's lock
        UserState.objects.select_for_update().get(user=user)
        waiting.start()
        wait_for_a_lock_wait()
        StaticToken.objects.filter(device=backup, token="alpha111").delete()  # the victim spends it
    waiting.join(30)
    assert [r.status_code for r in results] == [200]
    assert not verified_anywhere()
    assert sorted(backup.token_set.values_list("token", flat=True)) == sorted(set(BACKUP_CODES) - {"alpha111"})


@pytest.mark.django_db(transaction=True)
def test_a_single_request_grant_spent_while_a_request_waits_for_it_pays_nothing(
    user: Any, totp: TOTPDevice
) -> None:
    """The waiting request's conditional ``UPDATE`` reads the grant as it is once the lock is free.

    MySQL and MariaDB re-read a row an ``UPDATE`` waited for, under REPEATABLE READ
    too; PostgreSQL re-checks it (READ COMMITTED). The request must be refused.
    """
    if connection.vendor not in LOCK_WAITS:
        pytest.skip("SQLite has no row locks; tests/mysql runs this on MariaDB")
    transfer = {"amount": "5000.00", "account": "DE89370400440532013000"}
    browser = fresh_client(user, raise_request_exception=False)
    refused = browser.post("/transfers/", transfer)
    assert browser.post(refused["Location"], {"token": code(totp)}).status_code == 200  # confirm page
    results: list[Any] = []

    def pay() -> None:
        try:
            results.append(browser.post("/transfers/", transfer))
        finally:
            connection.close()

    waiting = threading.Thread(target=pay)
    with transaction.atomic():  # a parallel request of the same browser, using the grant
        grant = Grant.objects.select_for_update().exclude(digest="").get()
        waiting.start()
        wait_for_a_lock_wait()
        Grant.objects.filter(pk=grant.pk).update(used_at=grant.verified_at + 1)
    waiting.join(30)
    assert [challenged(r) for r in results] == [True]
    assert not Transfer.objects.exists()


# --- replay in parallel ----------------------------------------------------------------------


def _race(attempts: list[Callable[[], int]]) -> list[int | BaseException]:
    results: list[int | BaseException] = [0] * len(attempts)
    barrier = threading.Barrier(len(attempts))

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = attempts[i]()
        except BaseException as exc:  # a database lock error is a refusal, not a success
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(attempts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["backup", "totp"])
def test_one_code_submitted_in_parallel_verifies_at_most_once(
    user: Any, totp: TOTPDevice, backup: StaticDevice, kind: str
) -> None:
    """SQLite serialises the writers (the PostgreSQL row-lock race is in tests/scale)."""
    device, token = (backup, "alpha111") if kind == "backup" else (totp, code(totp))
    clients = [fresh_client(user, raise_request_exception=False) for _ in range(6)]

    def attempt(browser: Client) -> Callable[[], int]:
        return lambda: browser.post(VERIFY, {"device": device.persistent_id, "token": token}).status_code

    results = _race([attempt(c) for c in clients])
    assert results.count(303) <= 1
    assert Grant.objects.count() <= 1
    if kind == "backup" and 303 in results:
        assert not backup.token_set.filter(token="alpha111").exists()
    # Every browser but the one that succeeded is still held to step-up. (A request that failed
    # with "database table is locked" after the check may burn the code, or leave a grant for a
    # session it could not save: fail closed. PostgreSQL serialises them instead: tests/scale.)
    for browser, result in zip(clients, results, strict=True):
        if result != 303:
            response = browser.post(BILLING_EDIT, BILLING)
            assert response.status_code == 302
            assert response["Location"].startswith((VERIFY, "/accounts/login/"))
    assert not BillingProfile.objects.exists()


def test_an_api_single_request_grant_is_bound_to_the_refused_request(user: Any, totp: TOTPDevice) -> None:
    token = Token.objects.create(user=user)
    api = CredentialClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    transfer = {"amount": "5000.00", "account": "DE89370400440532013000"}
    refused = api.post("/api/transfers/", transfer, format="json")
    assert challenged(refused)
    answer = {"token": code(totp), "challenge": refused.json()["challenge"]}
    assert api.post(API_VERIFY, answer, format="json").status_code == 200
    assert challenged(
        api.post("/api/transfers/", {**transfer, "account": "GB82WEST12345698765432"}, format="json")
    )
    assert challenged(api.post("/api/transfers/", {**transfer, "amount": "9000.00"}, format="json"))
    assert api.post("/api/transfers/", transfer, format="json").status_code == 201
    assert challenged(api.post("/api/transfers/", transfer, format="json"))
    assert Transfer.objects.count() == 1


@pytest.mark.urls("tests.security.urls")
def test_a_single_request_grant_is_not_given_back_after_the_view_did_its_work(
    attacker: Client, user: Any, totp: TOTPDevice, backup: StaticDevice, policy: Any
) -> None:
    """A refusal deep in the view, after its side effect, must not hand the grant back for a second go."""
    from tests.security import views

    policy("pay", actions=["things.pay"], max_age=0, factors=["totp"])
    policy("notify", actions=["things.notify"], factors=["static"])
    refused = attacker.post("/t/pay/", {"amount": "5000"})
    assert challenged(refused)
    assert (
        attacker.post(refused["Location"], {"device": totp.persistent_id, "token": code(totp)}).status_code
        == 200
    )
    assert challenged(attacker.post("/t/pay/", {"amount": "5000"}))  # paid, then refused for "notify"
    assert views.CALLS == ["pay POST"]
    assert challenged(attacker.post("/t/pay/", {"amount": "5000"}))  # the grant is spent: no second payment
    assert views.CALLS == ["pay POST"]


@pytest.mark.urls("tests.security.urls")
def test_a_grant_used_by_enforce_in_the_views_own_code_is_not_given_back(
    attacker: Client, user: Any, totp: TOTPDevice, backup: StaticDevice, policy: Any
) -> None:
    """A plain view on a route no policy names (the middleware only glances at it) enforces
    in its own code: once enforce() allowed, the view may have acted, so a later refusal
    keeps the grant spent."""
    from tests.security import views

    policy("pay", actions=["things.pay"], max_age=0, factors=["totp"])
    policy("notify", actions=["things.notify"], factors=["static"])
    refused = attacker.post("/t/pay-in-code/", {"amount": "5000"})
    assert challenged(refused) and views.CALLS == []
    assert (
        attacker.post(refused["Location"], {"device": totp.persistent_id, "token": code(totp)}).status_code
        == 200
    )
    assert challenged(attacker.post("/t/pay-in-code/", {"amount": "5000"}))  # paid, then refused
    assert views.CALLS == ["pay-in-code POST"]
    assert challenged(attacker.post("/t/pay-in-code/", {"amount": "5000"}))  # no second payment
    assert views.CALLS == ["pay-in-code POST"]


@pytest.mark.urls("tests.security.urls")
def test_a_grant_used_by_a_check_before_the_views_code_is_given_back(
    attacker: Client, user: Any, totp: TOTPDevice, backup: StaticDevice, policy: Any
) -> None:
    """Two stacked checks, both needing a fresh code: the first one's grant survives the second's refusal."""
    from tests.security import views

    policy("pay", actions=["things.pay"], max_age=0, factors=["totp"])
    policy("notify", actions=["things.notify"], max_age=0, factors=["static"])
    first = attacker.post("/t/pay-and-notify/", {"amount": "5000"})
    attacker.post(first["Location"], {"device": totp.persistent_id, "token": code(totp)})
    second = attacker.post("/t/pay-and-notify/", {"amount": "5000"})
    assert challenged(second) and views.CALLS == []
    attacker.post(second["Location"], {"device": backup.persistent_id, "token": "alpha111"})
    assert attacker.post("/t/pay-and-notify/", {"amount": "5000"}).status_code == 200
    assert views.CALLS == ["pay-and-notify POST"]
    assert challenged(attacker.post("/t/pay-and-notify/", {"amount": "5000"}))
    assert views.CALLS == ["pay-and-notify POST"]


# --- a single-request grant binds the whole request when the view asks ------------------------


def _approve(client: Client, path: str, data: dict[str, Any], totp: TOTPDevice) -> None:
    """Be refused for ``data``, verify the challenge: a single-request grant for that request."""
    refused = client.post(path, data)
    assert challenged(refused)
    answer = {"device": totp.persistent_id, "token": code(totp)}
    assert client.post(refused["Location"], answer).status_code == 200


@pytest.mark.urls("tests.security.urls")
def test_control_an_attribute_bound_grant_does_not_bind_what_is_not_an_attribute(
    attacker: Client, totp: TOTPDevice, policy: Any
) -> None:
    """Why ``bind_request`` exists: with only the amount as an attribute, the payee is free."""
    from tests.security import views

    policy("pay", actions=["things.pay"], max_age=0)
    _approve(attacker, "/t/pay-amount/", {"amount": "5000", "to": "bob"}, totp)
    assert attacker.post("/t/pay-amount/", {"amount": "5000", "to": "mallory"}).status_code == 200
    assert views.CALLS == ["pay 5000 to mallory POST"]


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize(
    ("path", "changed"),
    [
        ("/t/pay-bound/", {"amount": "5000", "to": "mallory"}),  # another payee
        ("/t/pay-bound/", {"amount": "5000", "to": "bob", "memo": "x"}),  # a field added
        ("/t/pay-bound/", {"amount": "5000"}),  # a field left out
        ("/t/pay-bound/", {"amount": "5000", "to": ["bob", "mallory"]}),  # a field repeated
        ("/t/pay-bound/?to=mallory", {"amount": "5000", "to": "bob"}),  # the query string
        ("/t/pay-bound/mallory/", {"amount": "5000", "to": "bob"}),  # a path parameter
    ],
    ids=["payee", "added", "removed", "repeated", "query", "path"],
)
def test_a_request_bound_grant_pays_only_the_request_approved(
    attacker: Client, totp: TOTPDevice, policy: Any, path: str, changed: dict[str, Any]
) -> None:
    from tests.security import views

    policy("pay", actions=["things.pay"], max_age=0)
    approved = {"amount": "5000", "to": "bob"}
    _approve(attacker, "/t/pay-bound/", approved, totp)
    assert challenged(attacker.post(path, changed))
    assert views.CALLS == []
    assert attacker.post("/t/pay-bound/", approved).status_code == 200  # the control: still unused
    assert views.CALLS == ["pay 5000 to bob POST"]
    assert challenged(attacker.post("/t/pay-bound/", approved))  # and single-use


@pytest.mark.urls("tests.security.urls")
def test_a_request_bound_grant_ignores_field_order_and_the_csrf_token(
    attacker: Client, totp: TOTPDevice, policy: Any
) -> None:
    from tests.security import views

    policy("pay", actions=["things.pay"], max_age=0)
    _approve(attacker, "/t/pay-bound/", {"amount": "5000", "to": "bob"}, totp)
    body = "to=bob&csrfmiddlewaretoken=anything&amount=5000"
    response = attacker.post("/t/pay-bound/", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert views.CALLS == ["pay 5000 to bob POST"]


@pytest.mark.urls("tests.security.urls")
def test_a_request_bound_grant_of_an_api_view_pays_only_the_body_approved(
    user: Any, totp: TOTPDevice, policy: Any
) -> None:
    from tests.clients import CredentialClient
    from tests.security import views

    policy("pay", actions=["things.pay"], max_age=0)
    api = CredentialClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    approved = {"amount": "5000", "to": "bob"}
    refused = api.post("/t/api/pay-bound/", approved, format="json")
    assert challenged(refused)
    answer = {"token": code(totp), "challenge": refused.json()["challenge"]}
    assert api.post(API_VERIFY, answer, format="json").status_code == 200
    assert challenged(api.post("/t/api/pay-bound/", {"amount": "5000", "to": "mallory"}, format="json"))
    assert challenged(api.post("/t/api/pay-bound/", {**approved, "memo": "x"}, format="json"))
    reordered = '{"to": "bob",  "amount": "5000"}'  # key order and spacing don't matter
    assert api.post("/t/api/pay-bound/", reordered, content_type="application/json").status_code == 201
    assert views.CALLS == ["pay-api 5000 to bob"]
