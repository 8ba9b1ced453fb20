from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from project.demo.security import format_secret
from stepup.testing import assert_requires_stepup, stepup_verified

pytestmark = pytest.mark.django_db

SECURITY = reverse("demo:security")


def enroll(client) -> TOTPDevice:
    response = client.post(reverse("demo:totp-enroll"))
    assert response.status_code == 302
    return TOTPDevice.objects.get(confirmed=False)


def test_security_page_needs_login(client):
    response = client.get(SECURITY)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_security_page_lists_devices(logged_in, totp_device):
    response = logged_in.get(SECURITY)
    assert response.status_code == 200
    assert totp_device.persistent_id in response.content.decode()


def test_enrollment_creates_an_unconfirmed_device_and_shows_its_qr_code_and_secret(logged_in, user):
    device = enroll(logged_in)
    assert device.user == user
    page = logged_in.get(SECURITY).content.decode()
    assert "<svg" in page
    assert format_secret(device.bin_key) in page


def test_starting_again_replaces_the_unfinished_device(logged_in):
    first = enroll(logged_in)
    second = enroll(logged_in)
    assert first.pk != second.pk
    assert list(TOTPDevice.objects.filter(confirmed=False)) == [second]


def test_enrollment_is_confirmed_with_a_current_code(logged_in, code):
    device = enroll(logged_in)
    response = logged_in.post(reverse("demo:totp-confirm"), {"token": code(device)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed


def test_a_wrong_code_leaves_the_device_unconfirmed_and_says_so(logged_in, code):
    device = enroll(logged_in)
    wrong = f"{(int(code(device)) + 1) % 1_000_000:06d}"
    response = logged_in.post(reverse("demo:totp-confirm"), {"token": wrong})
    assert response.status_code == 200
    assert "did not match" in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed


def test_confirming_without_an_enrollment_in_progress_says_so(logged_in):
    response = logged_in.post(reverse("demo:totp-confirm"), {"token": "123456"}, follow=True)
    assert "no authenticator waiting" in response.content.decode()


def test_confirmation_returns_to_a_safe_next_url(logged_in, code):
    device = enroll(logged_in)
    data = {"token": code(device), "next": reverse("demo:billing-update")}
    response = logged_in.post(reverse("demo:totp-confirm"), data)
    assert response["Location"] == reverse("demo:billing-update")


def test_confirmation_ignores_an_unsafe_next_url(logged_in, code):
    device = enroll(logged_in)
    data = {"token": code(device), "next": "https://evil.example/"}
    response = logged_in.post(reverse("demo:totp-confirm"), data)
    assert response["Location"] == SECURITY


def test_enroll_and_confirm_need_post(logged_in):
    assert logged_in.get(reverse("demo:totp-enroll")).status_code == 405
    assert logged_in.get(reverse("demo:totp-confirm")).status_code == 405
    assert not TOTPDevice.objects.exists()


def test_backup_codes_are_generated_shown_once_and_replace_the_old_set(logged_in, user):
    first = logged_in.post(reverse("demo:backup-codes"))
    assert first.status_code == 200
    assert "no-store" in first["Cache-Control"]
    tokens = set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
    assert len(tokens) == 10
    assert all(token in first.content.decode() for token in tokens)

    with stepup_verified(logged_in, user):  # the first set is a second factor now
        logged_in.post(reverse("demo:backup-codes"))
    assert StaticDevice.objects.filter(user=user).count() == 1
    again = set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
    assert len(again) == 10 and not again & tokens
    assert not any(token in logged_in.get(SECURITY).content.decode() for token in again)


def test_backup_codes_need_post(logged_in):
    assert logged_in.get(reverse("demo:backup-codes")).status_code == 405
    assert not StaticDevice.objects.exists()


def test_removing_a_device_needs_post(logged_in, totp_device):
    response = logged_in.get(reverse("demo:device-remove"), {"device": totp_device.persistent_id})
    assert response.status_code == 405
    assert TOTPDevice.objects.filter(pk=totp_device.pk).exists()


def test_removing_a_device_needs_the_csrf_token(user, totp_device):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(reverse("demo:device-remove"), {"device": totp_device.persistent_id})
    assert response.status_code == 403
    assert TOTPDevice.objects.filter(pk=totp_device.pk).exists()


def test_a_user_removes_their_own_device(logged_in, user, totp_device):
    with stepup_verified(logged_in, user):
        response = logged_in.post(reverse("demo:device-remove"), {"device": totp_device.persistent_id})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(pk=totp_device.pk).exists()


def test_removing_someone_elses_device_is_404(logged_in, make_user):
    other = TOTPDevice.objects.create(user=make_user("mallory"), name="Theirs", confirmed=True)
    response = logged_in.post(reverse("demo:device-remove"), {"device": other.persistent_id})
    assert response.status_code == 404
    assert TOTPDevice.objects.filter(pk=other.pk).exists()


@pytest.mark.parametrize("device_id", ["", "otp_totp.totpdevice/999", "nonsense"])
def test_removing_an_unknown_device_is_404(logged_in, device_id):
    response = logged_in.post(reverse("demo:device-remove"), {"device": device_id})
    assert response.status_code == 404


# Once a user has a second factor, changing their factors is itself a risky moment:
# a stolen session must not enroll the thief's phone or remove the owner's.


def test_a_first_authenticator_needs_no_stepup(logged_in):
    assert logged_in.post(reverse("demo:totp-enroll")).status_code == 302
    assert TOTPDevice.objects.filter(confirmed=False).exists()


def test_adding_another_authenticator_requires_stepup(logged_in, totp_device):
    # The device views call enforce() first thing (a user's first device needs no step-up).
    assert_requires_stepup(logged_in, "post", reverse("demo:totp-enroll"), refused_in_view=True)
    assert not TOTPDevice.objects.filter(confirmed=False).exists()


def test_adding_another_authenticator_after_stepup(logged_in, user, totp_device):
    with stepup_verified(logged_in, user):
        assert logged_in.post(reverse("demo:totp-enroll")).status_code == 302
    assert TOTPDevice.objects.filter(confirmed=False).exists()


def test_new_backup_codes_require_stepup(logged_in, totp_device):
    assert_requires_stepup(logged_in, "post", reverse("demo:backup-codes"), refused_in_view=True)
    assert not StaticDevice.objects.exists()


def test_removing_a_device_requires_stepup(logged_in, totp_device):
    data = {"device": totp_device.persistent_id}
    assert_requires_stepup(logged_in, "post", reverse("demo:device-remove"), data, refused_in_view=True)
    assert TOTPDevice.objects.filter(pk=totp_device.pk).exists()
