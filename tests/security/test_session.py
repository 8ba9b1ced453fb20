"""Sessions and redirects: fixation, grants outliving what they were bound to, open redirects, CSRF, framing.

The session thief holds a copy of a session cookie; the password holder is
logged in without a second factor; the anonymous attacker lures a victim
through links and cross-site forms.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stepup import grants
from stepup.models import Grant, PendingChallenge, UserState
from stepup.testing import flush_decision_log, stepup_verified
from tests.conftest import PASSWORD
from tests.security import views
from tests.security.conftest import API_VERIFY, VERIFY, code, fresh_client, wrong_code
from tests.security.test_routing import BILLING, BILLING_EDIT, challenged
from tests.shop.models import BillingProfile, Transfer
from tests.verification.test_confirm import form_of, retyped_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced_policies")]

COOKIE = django_settings.SESSION_COOKIE_NAME


def session_key(browser: Client) -> str:
    return browser.cookies[COOKIE].value


def with_cookie(key: str) -> Client:
    """The thief's browser: a copy of a session cookie, nothing else."""
    thief = Client()
    thief.cookies[COOKIE] = key
    return thief


def billing_written() -> bool:
    return BillingProfile.objects.exists()


# --- fixation ---------------------------------------------------------------------------


def test_a_session_fixed_before_login_is_worth_nothing_after_login_and_verification(
    user: Any, totp: TOTPDevice
) -> None:
    fixed = SessionStore()
    fixed[grants.SESSION_KEY] = {"subject": "s:chosen-by-the-attacker"}
    fixed.create()
    victim = with_cookie(fixed.session_key)
    assert victim.post("/accounts/login/", {"username": "erin", "password": PASSWORD}).status_code == 302
    refused = victim.post(BILLING_EDIT, BILLING)
    assert victim.post(refused["Location"], {"token": code(totp)}).status_code in (200, 303)
    assert session_key(victim) != fixed.session_key
    assert not Grant.objects.filter(subject="s:chosen-by-the-attacker").exists()
    thief = with_cookie(fixed.session_key)
    response = thief.post(BILLING_EDIT, BILLING)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not billing_written()


def test_a_session_stolen_before_verification_cannot_ride_it(attacker: Client, totp: TOTPDevice) -> None:
    stolen = session_key(attacker)
    refused = attacker.post(BILLING_EDIT, BILLING)
    attacker.post(refused["Location"], {"token": code(totp)})
    assert session_key(attacker) != stolen  # rotated at verification
    thief = with_cookie(stolen)
    response = thief.post(BILLING_EDIT, BILLING)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not billing_written()


def test_a_challenge_of_one_session_is_nothing_in_another(user: Any, totp: TOTPDevice) -> None:
    """A leaked verify URL (challenge id) binds nothing for the session that did not make it."""
    transfer = {"amount": "5000.00", "account": "DE89370400440532013000"}
    victim, attacker = fresh_client(user), fresh_client(user)
    refused = victim.post("/transfers/", transfer)
    challenge = parse_qs(urlsplit(refused["Location"]).query)["challenge"][0]
    page = attacker.get(refused["Location"])
    assert b"5000.00" not in page.content  # the other session's challenge is not shown
    attacker.post(VERIFY, {"challenge": challenge, "token": code(totp)})
    assert not Grant.objects.exclude(digest="").exists()  # no single-request grant anywhere
    assert challenged(attacker.post("/transfers/", transfer))
    assert not Transfer.objects.exists()
    assert PendingChallenge.objects.filter(challenge_id=challenge).exists()


def test_a_challenge_id_in_other_letter_case_is_not_that_challenge(user: Any, totp: TOTPDevice) -> None:
    """Challenge ids are matched exactly, also where the collation ignores case (MySQL, MariaDB)."""
    transfer = {"amount": "5000.00", "account": "DE89370400440532013000"}
    browser = fresh_client(user)
    refused = browser.post("/transfers/", transfer)
    challenge = parse_qs(urlsplit(refused["Location"]).query)["challenge"][0]
    other_case = challenge.swapcase()
    assert other_case != challenge
    page = browser.get(f"{VERIFY}?challenge={other_case}")
    assert b"5000.00" not in page.content  # a generic verification, not this challenge's
    browser.post(VERIFY, {"challenge": other_case, "token": code(totp)})
    assert not Grant.objects.exclude(digest="").exists()  # no single-request grant
    assert challenged(browser.post("/transfers/", transfer))
    assert not Transfer.objects.exists()
    assert PendingChallenge.objects.filter(challenge_id=challenge).exists()


# --- grants outliving what they were bound to ---------------------------------------------


def test_grants_do_not_survive_logout(attacker: Client, user: Any) -> None:
    with stepup_verified(attacker, user):
        verified_key = session_key(attacker)
        attacker.post("/accounts/logout/")
        assert not Grant.objects.exists()
        attacker.force_login(user)
        assert challenged(attacker.post(BILLING_EDIT, BILLING))
        thief = with_cookie(verified_key)
        assert thief.post(BILLING_EDIT, BILLING)["Location"].startswith("/accounts/login/")
    assert not billing_written()


def test_grants_do_not_survive_a_password_change_in_the_same_session(attacker: Client, user: Any) -> None:
    with stepup_verified(attacker, user):
        user.set_password("a-new-password-2")
        user.save()
        session = attacker.session
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()  # update_session_auth_hash()
        session.save()
        assert attacker.get("/").status_code == 200  # still logged in
        assert challenged(attacker.post(BILLING_EDIT, BILLING))
    assert not billing_written()


def test_a_token_clients_grants_do_not_survive_a_password_change(user: Any, totp: TOTPDevice) -> None:
    token = Token.objects.create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.post(API_VERIFY, {"token": code(totp)}, format="json").status_code == 200
    user.set_password("a-new-password-2")
    user.save()
    response = api.put("/api/billing/", BILLING, format="json")  # the token itself still works
    assert challenged(response)
    assert not billing_written()


@pytest.mark.parametrize("removed", ["totp", "backup"])
def test_grants_do_not_survive_removing_a_device(
    attacker: Client,
    user: Any,
    totp: TOTPDevice,
    backup: StaticDevice,
    removed: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Removing any device (say, a stolen phone) voids every grant of the user, in every session."""
    token = Token.objects.create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert (
        api.post(API_VERIFY, {"device": backup.persistent_id, "token": "alpha111"}, format="json").status_code
        == 200
    )
    refused = attacker.post(BILLING_EDIT, BILLING)
    attacker.post(refused["Location"], {"device": totp.persistent_id, "token": code(totp)})
    with django_capture_on_commit_callbacks(execute=True):  # the deletion commits
        (totp if removed == "totp" else backup).delete()
    assert challenged(attacker.post(BILLING_EDIT, BILLING))
    assert challenged(api.put("/api/billing/", BILLING, format="json"))
    assert not billing_written()


def test_removing_a_device_on_the_devices_page_voids_the_verification_it_needed(
    attacker: Client,
    user: Any,
    totp: TOTPDevice,
    backup: StaticDevice,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with stepup_verified(attacker, user):
        with django_capture_on_commit_callbacks(execute=True):
            response = attacker.post(f"/stepup/devices/{backup.persistent_id}/remove/")
        assert response.status_code == 302 and not StaticDevice.objects.exists()
        assert challenged(attacker.post(BILLING_EDIT, BILLING))
    assert not billing_written()


# --- open redirects ---------------------------------------------------------------------

OFFSITE = [
    "//evil.example/",
    "///evil.example/",
    "////evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "\\/evil.example/",
    "/\\/evil.example/",
    "https://evil.example/",
    "http://evil.example/",
    "https:evil.example/",
    "http:/evil.example/",
    "https:/\\evil.example/",
    "//evil.example@testserver/",
    "https://testserver@evil.example/",
    "https://testserver.evil.example/",
    "https://evil.example#@testserver/",
    "https://evil.example?@testserver/",
    "https://evil.example\\@testserver/",
    "http://testserver:80@evil.example/",
    "//evil%2Eexample/",
    "/%2F/evil.example/",
    "%2F%2Fevil.example/",
    "/%5Cevil.example/",
    "/%09/evil.example/",
    "/\t/evil.example/",
    "/\n/evil.example/",
    "/\r/evil.example/",
    "\x00//evil.example/",
    " //evil.example/",
    "//evil.example/ ",
    "\u3000//evil.example/",
    "//evil\u3002example/",
    "\uff0f\uff0fevil.example/",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//[::1]@evil.example/",
    "https://[::ffff:7f00:1]/",
    "ftp://evil.example/",
    "//evil.example:443/",
    "/" + "/" * 5000 + "evil.example",
]


def _landing(response: Any) -> str:
    assert response.status_code == 303, response.status_code
    return str(response["Location"])


def is_local(location: str) -> bool:
    parts = urlsplit(location)
    return (
        not parts.scheme and not parts.netloc and location.startswith("/") and not location.startswith("//")
    )


@pytest.mark.parametrize("next_url", OFFSITE)
@pytest.mark.parametrize("where", ["form", "query"])
def test_verification_never_redirects_off_site(
    attacker: Client, totp: TOTPDevice, next_url: str, where: str
) -> None:
    data = {"token": code(totp)}
    url = VERIFY
    if where == "form":
        data["next"] = next_url
    else:
        from urllib.parse import urlencode

        url = f"{VERIFY}?{urlencode({'next': next_url})}"
    location = _landing(attacker.post(url, data))
    assert is_local(location) and location == "/"


def test_control_a_local_next_is_followed(attacker: Client, totp: TOTPDevice) -> None:
    assert (
        _landing(attacker.post(VERIFY, {"token": code(totp), "next": "/billing/?x=1#y"})) == "/billing/?x=1#y"
    )


@pytest.mark.parametrize("next_url", ["/\u2215\u2215evil.example/", "/\uff0f\uff0fevil.example/"])
def test_look_alike_slashes_stay_a_local_path(attacker: Client, totp: TOTPDevice, next_url: str) -> None:
    """Not a slash to a URL parser: the Location is this site's path, percent-encoded."""
    location = _landing(attacker.post(VERIFY, {"token": code(totp), "next": next_url}))
    assert location.startswith("/%E2%88%95") or location.startswith("/%EF%BC%8F") or location == "/"
    assert is_local(location)


@pytest.mark.urls("tests.security.urls_catchall")
@pytest.mark.parametrize(
    "raw_path", ["//evil.example/x", "/\\evil.example/x", "/\t/evil.example/x", "///evil.example"]
)
def test_an_attacker_chosen_path_never_becomes_an_off_site_confirm_form(
    attacker: Client, policy: Any, totp: TOTPDevice, raw_path: str
) -> None:
    """The confirm page posts the interrupted form back to its own path: never to another origin."""
    policy("catch-all", urls=["catch-all"], methods=["POST"])
    refused = attacker.post("/", {"amount": "1"}, PATH_INFO=raw_path)
    assert challenged(refused)
    response = attacker.post(refused["Location"], {"token": code(totp)})
    body = response.content.decode()
    assert 'action="/' not in body.replace('action="/stepup/', "") or response.status_code == 303
    if response.status_code == 303:
        assert is_local(response["Location"])
    else:
        action = body.split('<form method="post" action="', 1)[1].split('"', 1)[0]
        assert is_local(action)
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls_catchall")
@pytest.mark.parametrize("raw_path", ["//evil.example/x", "/\t/evil.example/x", "/\\evil.example/x"])
def test_the_login_redirect_carries_no_off_site_next(
    client: Client, user: Any, policy: Any, raw_path: str
) -> None:
    policy("catch-all", urls=["catch-all"])
    response = client.get("/", PATH_INFO=raw_path)
    assert response.status_code == 302
    login = urlsplit(response["Location"])
    assert login.path == "/accounts/login/"
    user_next = parse_qs(login.query).get("next", [""])[0]
    logged_in = client.post(
        response["Location"], {"username": "erin", "password": PASSWORD, "next": user_next}
    )
    assert is_local(logged_in["Location"])
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls_catchall")
@pytest.mark.parametrize(
    "raw_path", ["//evil.example/x", "/\t/evil.example/x", "/\\evil.example/x", "/\r/evil.example"]
)
def test_the_enroll_page_links_back_only_on_site(
    client: Client, user: Any, policy: Any, raw_path: str, settings: Any
) -> None:
    """A user without a second factor gets a page with a "try again" link to the refused path."""
    settings.STEPUP = {**settings.STEPUP, "ENROLL_URL": None}  # the page, not stepup:devices
    policy("catch-all", urls=["catch-all"])
    client.force_login(user)  # no device
    response = client.get("/", PATH_INFO=raw_path)
    assert response.status_code == 403
    link = response.content.decode().split("try again", 1)[0].rsplit('href="', 1)[1].split('"', 1)[0]
    assert is_local(link.replace("\t", "").replace("\n", "").replace("\r", ""))
    assert views.CALLS == []


# --- CSRF ---------------------------------------------------------------------------------


@pytest.fixture
def csrf_attacker(user: Any, totp: TOTPDevice) -> Client:
    """The victim's browser as a cross-site form sees it: logged in, and no CSRF token to send."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    return browser


def test_a_cross_site_verify_post_is_refused_and_counts_no_failure(
    csrf_attacker: Client, user: Any, totp: TOTPDevice
) -> None:
    """Else any web page could lock a victim out by posting wrong codes from their browser."""
    for _ in range(3):
        assert csrf_attacker.post(VERIFY, {"token": wrong_code(totp)}).status_code == 403
    assert csrf_attacker.post(VERIFY, {"token": code(totp)}).status_code == 403
    totp.refresh_from_db()
    assert totp.throttling_failure_count == 0
    assert not UserState.objects.filter(user=user, failures__gt=0).exists()
    assert not Grant.objects.exists()


def test_a_cross_site_api_verify_post_is_refused_and_counts_no_failure(
    csrf_attacker: Client, user: Any, totp: TOTPDevice
) -> None:
    for token in (wrong_code(totp), code(totp)):
        response = csrf_attacker.post(API_VERIFY, {"token": token}, content_type="application/json")
        assert response.status_code == 403
    totp.refresh_from_db()
    assert totp.throttling_failure_count == 0
    assert not Grant.objects.exists()


@pytest.mark.parametrize(
    ("url", "data"),
    [(BILLING_EDIT, BILLING), ("/transfers/", {"amount": "5", "account": "DE89370400440532013000"})],
)
def test_a_cross_site_post_to_a_protected_view_is_refused_even_when_verified(
    csrf_attacker: Client, user: Any, url: str, data: Any
) -> None:
    with stepup_verified(csrf_attacker, user):
        assert csrf_attacker.post(url, data).status_code == 403
    assert not billing_written() and not Transfer.objects.exists()
    assert not PendingChallenge.objects.exists()


def test_the_confirm_page_carries_a_fresh_csrf_token(user: Any, totp: TOTPDevice) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    form = browser.get(BILLING_EDIT)
    token = (
        form.cookies["csrftoken"].value if "csrftoken" in form.cookies else browser.cookies["csrftoken"].value
    )
    refused = browser.post(BILLING_EDIT, {**BILLING, "csrfmiddlewaretoken": token})
    verify_page = browser.get(refused["Location"])
    verify_token = verify_page.context["csrf_token"]
    confirm = browser.post(
        refused["Location"], {"token": code(totp), "csrfmiddlewaretoken": str(verify_token)}
    )
    assert confirm.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in confirm.content.decode()
    assert PendingChallenge.objects.count() == 0


# --- framing and caching ---------------------------------------------------------------------


def assert_hardened(response: Any, *, page: bool = True) -> None:
    cache = response.get("Cache-Control", "")
    assert "no-store" in cache, cache
    if page:
        assert response.get("X-Frame-Options") == "DENY"
        assert "frame-ancestors 'none'" in response.get("Content-Security-Policy", "")


def test_the_verify_page_is_unframeable_and_uncached(
    attacker: Client, totp: TOTPDevice, settings: Any
) -> None:
    refused = attacker.post(BILLING_EDIT, BILLING)
    assert_hardened(refused, page=False)
    assert_hardened(attacker.get(refused["Location"]))
    assert_hardened(attacker.post(refused["Location"], {"token": "000000x"}))  # the form with an error
    settings.OTP_TOTP_THROTTLE_FACTOR = 60
    attacker.post(refused["Location"], {"token": wrong_code(totp)})
    throttled = attacker.post(refused["Location"], {"token": code(totp)})
    assert throttled.status_code == 429
    assert_hardened(throttled)


def test_the_confirm_page_is_unframeable_and_uncached(attacker: Client, totp: TOTPDevice) -> None:
    refused = attacker.post(BILLING_EDIT, BILLING)
    confirm = attacker.post(refused["Location"], {"token": code(totp)})
    assert confirm.status_code == 200 and b"Confirm your request" in confirm.content
    assert_hardened(confirm)


def test_the_stepup_api_answers_are_unframeable_and_uncached(attacker: Client, totp: TOTPDevice) -> None:
    for response in (
        attacker.post(API_VERIFY, {"token": "x"}, content_type="application/json"),
        attacker.post(API_VERIFY, {"token": code(totp)}, content_type="application/json"),
        attacker.get("/stepup/api/status/?action=payments.transfer"),
        attacker.post("/stepup/api/decide/", {"action": "x"}, content_type="application/json"),
        Client().post(API_VERIFY, {"token": "1"}, content_type="application/json"),
    ):
        assert_hardened(response)


def test_step_up_refusals_of_the_demo_api_are_uncached(user: Any, totp: TOTPDevice) -> None:
    api = APIClient()
    api.force_login(user)
    refused = api.put("/api/billing/", BILLING, format="json")
    assert challenged(refused)
    assert_hardened(refused, page=False)
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    refused = client.post("/api/transfers/", {"amount": "5000.00", "account": "DE89370400440532013000"})
    assert challenged(refused)
    assert_hardened(refused, page=False)


def test_the_enroll_page_is_uncached(client: Client, user: Any, settings: Any) -> None:
    client.force_login(user)  # no device
    response = client.post(BILLING_EDIT, BILLING)
    assert response.status_code == 302 and response["Location"].startswith("/stepup/devices/?next=")
    assert_hardened(response, page=False)
    settings.STEPUP = {**settings.STEPUP, "ENROLL_URL": None}
    response = client.post(BILLING_EDIT, BILLING)
    assert response.status_code == 403
    assert_hardened(response, page=False)


# --- cookie-held sessions -------------------------------------------------------------------


@pytest.fixture
def cookie_sessions(settings: Any) -> None:
    """``signed_cookies``: the server can't invalidate a copy of an old session cookie."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"


@pytest.mark.usefixtures("cookie_sessions")
def test_an_old_cookie_session_cannot_ride_a_later_verification(user: Any, totp: TOTPDevice) -> None:
    victim = fresh_client(user)
    stolen = session_key(victim)  # the thief copies the cookie before the victim verifies
    refused = victim.post(BILLING_EDIT, BILLING)
    assert challenged(refused)
    assert victim.post(refused["Location"], {"token": code(totp)}).status_code == 200
    thief = with_cookie(stolen)
    assert thief.get("/").status_code == 200  # a signed cookie stays a valid login ...
    assert challenged(thief.post(BILLING_EDIT, BILLING))  # ... but carries no step-up
    assert not billing_written()


@pytest.mark.usefixtures("cookie_sessions")
def test_an_old_cookie_session_gets_nothing_after_logout(user: Any, totp: TOTPDevice) -> None:
    victim = fresh_client(user)
    refused = victim.post(BILLING_EDIT, BILLING)
    victim.post(refused["Location"], {"token": code(totp)})
    stolen = session_key(victim)  # a verified session's cookie
    victim.post("/accounts/logout/")
    thief = with_cookie(stolen)
    assert challenged(thief.post(BILLING_EDIT, BILLING))
    assert not billing_written()


# --- secrets at rest ----------------------------------------------------------------------------


SECRET = "Sw0rdfish!-7731"
IBAN = "DE89370400440532013000"
SECRET_FIELD_NAMES = [
    "pwd",
    "pw",
    "cvv2",
    "card_number",
    "newPassword",
    "user[pwd]",
    "card-number",
    "CardNumber",
    "cc_num",
    "new_password1",
    "api_key",
    "pin",
    "otp",
    "security_code",
    "ssn",
    "privateKey",
]


def stored_anywhere(value: str) -> list[str]:
    """The tables of the test database that hold ``value`` anywhere, in any column."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            if any(value in str(cell) for row in cursor.fetchall() for cell in row):
                found.append(table)
    return found


def interrupted_post(attacker: Client, policy: Any, fields: dict[str, str]) -> Any:
    policy("edit", urls=["edit"], methods=["POST"])
    refused = attacker.post("/t/edit/", fields)
    assert challenged(refused)
    return refused


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("name", SECRET_FIELD_NAMES)
def test_a_secret_in_an_interrupted_post_is_never_stored_or_shown(
    attacker: Client, policy: Any, totp: TOTPDevice, name: str
) -> None:
    """A password, code or card number in an interrupted form never reaches the database or a page.

    The rest of the form is kept for the one-click confirmation, which asks for the secret again.
    """
    refused = interrupted_post(attacker, policy, {"amount": "5", "iban": IBAN, name: SECRET})
    [row] = PendingChallenge.objects.all()
    assert row.data["post"] == {"amount": ["5"], "iban": [IBAN]}
    assert stored_anywhere(SECRET) == []
    confirm = attacker.post(refused["Location"], {"token": code(totp)})
    html = confirm.content.decode()
    assert confirm.status_code == 200 and SECRET not in html
    action, hidden = form_of(html)
    assert action == "/t/edit/"
    assert {k: v for k, v in hidden.items() if k != "csrfmiddlewaretoken"} == {
        "amount": ["5"],
        "iban": [IBAN],
    }
    assert retyped_of(html) == [name]
    assert stored_anywhere(SECRET) == [] and views.CALLS == []


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize(
    "spelling", ["memorable_word", "memorableWord", "user[memorable-word]", "MEMORABLE.WORD"]
)
def test_the_secret_fields_setting_adds_names(
    attacker: Client, policy: Any, totp: TOTPDevice, settings: Any, spelling: str
) -> None:
    settings.STEPUP = {**settings.STEPUP, "SECRET_FIELDS": ["memorable_word"]}
    refused = interrupted_post(attacker, policy, {"amount": "5", spelling: SECRET})
    assert PendingChallenge.objects.get().data["post"] == {"amount": ["5"]}
    assert stored_anywhere(SECRET) == []
    html = attacker.post(refused["Location"], {"token": code(totp)}).content.decode()
    assert SECRET not in html and retyped_of(html) == [spelling]


@pytest.mark.urls("tests.security.urls")
def test_control_without_the_setting_a_custom_name_is_kept(
    attacker: Client, policy: Any, totp: TOTPDevice
) -> None:
    interrupted_post(attacker, policy, {"amount": "5", "memorable_word": "not-a-secret-here"})
    assert PendingChallenge.objects.get().data["post"] == {
        "amount": ["5"],
        "memorable_word": ["not-a-secret-here"],
    }


@pytest.mark.urls("tests.security.urls")
def test_control_an_interrupted_post_without_secrets_is_kept_for_one_click(
    attacker: Client, policy: Any, totp: TOTPDevice
) -> None:
    policy("edit", urls=["edit"], methods=["POST"])
    refused = attacker.post("/t/edit/", {"amount": "5"})
    assert PendingChallenge.objects.get().data["post"] == {"amount": ["5"]}
    confirm = attacker.post(refused["Location"], {"token": code(totp)})
    assert confirm.status_code == 200 and b'name="amount" value="5"' in confirm.content
    assert views.CALLS == []


def test_a_cross_site_api_write_with_the_session_is_refused(user: Any, totp: TOTPDevice) -> None:
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(user)
    with stepup_verified(api, user):
        assert api.put("/api/billing/", BILLING, format="json").status_code == 403
    assert not billing_written()


@pytest.mark.parametrize("header", ["HTTP_X_FORWARDED_HOST", "HTTP_X_ORIGINAL_HOST", "HTTP_FORWARDED"])
def test_a_forged_host_header_does_not_make_another_site_local(
    attacker: Client, totp: TOTPDevice, header: str
) -> None:
    value = "host=evil.example" if header == "HTTP_FORWARDED" else "evil.example"
    response = attacker.post(
        VERIFY, {"token": code(totp), "next": "https://evil.example/"}, **{header: value}
    )
    assert _landing(response) == "/"


@pytest.mark.parametrize(
    "next_url", ["//evil.example/", "/\\evil.example/", "https://evil.example/", "/\t/evil.example"]
)
def test_the_enrollment_flow_returns_only_on_site(client: Client, user: Any, next_url: str) -> None:
    """Where step-up sends a user without a device (``ENROLL_URL``) and back (the devices page's ``next``)."""
    client.force_login(user)
    client.post("/stepup/devices/authenticator/", {"step": "start", "next": next_url})
    pending = TOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post(
        "/stepup/devices/authenticator/", {"step": "confirm", "token": code(pending), "next": next_url}
    )
    assert response.status_code == 200 and pending.user.staticdevice_set.exists()  # first: backup codes
    assert "evil.example" not in response.content.decode()  # "I have saved them" stays on site
    assert "evil.example" not in client.get("/stepup/devices/", {"next": next_url}).content.decode()


def test_a_stolen_session_cannot_erase_the_decision_log_or_policy_history(
    client: Client, django_user_model: Any
) -> None:
    """Covering tracks: the log and the history are read-only in the admin, for superusers too."""
    from stepup.models import DecisionLog, Policy

    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-1")
    client.force_login(root)
    with stepup_verified(client, root):
        client.post(BILLING_EDIT, BILLING)  # something to log
        flush_decision_log()
        rows, history = DecisionLog.objects.count(), Policy.history.count()
        assert rows and history
        log_row = DecisionLog.objects.first()
        history_row = Policy.history.first()
        for url, data in (
            (f"/admin/stepup/decisionlog/{log_row.pk}/delete/", {"post": "yes"}),
            (
                "/admin/stepup/decisionlog/",
                {"action": "delete_selected", "_selected_action": [log_row.pk], "post": "yes"},
            ),
            (f"/admin/stepup/decisionlog/{log_row.pk}/change/", {"detail": "nothing to see"}),
            (f"/admin/stepup/historicalpolicy/{history_row.pk}/delete/", {"post": "yes"}),
            (f"/admin/stepup/historicalpolicy/{history_row.pk}/change/", {"history_change_reason": "x"}),
        ):
            assert client.post(url, data).status_code in (403, 302, 200)
    assert DecisionLog.objects.filter(pk=log_row.pk).exists()
    assert DecisionLog.objects.get(pk=log_row.pk).detail != "nothing to see"
    assert Policy.history.filter(pk=history_row.pk).exists()
    assert Policy.history.count() == history
