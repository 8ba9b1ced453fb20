"""A project-registered factor kind and an authentication backend, for the factor tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend

from stepup.factors import Choice, Factor
from stepup.forms import FactorForm

SECRET_WORD = "open-sesame"


class WordForm(FactorForm):
    word = forms.CharField(max_length=64)


class WordFactor(Factor):
    """``word``: the user types a fixed word (a stand-in for a project's own kind)."""

    kind = "word"
    label = "Magic word"
    form_class = WordForm
    secret_fields = ("word",)
    failure_field = "word"

    def choices(self, user: Any) -> list[Choice]:
        return [Choice(self, self.kind)]

    def selected_by(self, data: Mapping[str, Any]) -> bool:
        return "word" in data

    def verify(self, request: Any, user: Any, choice: Choice, data: Mapping[str, Any], target: Any) -> bool:
        return data["word"] == SECRET_WORD


class PinBackend(BaseBackend):
    """A careless custom backend: the password ``"pin-<name>"`` returns user ``<name>``, whoever asks."""

    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kw: Any
    ) -> Any:
        if password and password.startswith("pin-"):
            return get_user_model().objects.filter(username=password[4:]).first()
        return None

    def get_user(self, user_id: int) -> Any:
        return get_user_model().objects.filter(pk=user_id).first()
