"""Policy descriptions in the user's language (CONTRACT §9).

A policy's ``description`` is one text or texts by language code
(:data:`stepup.policy.model.Description`). :func:`localized_description`
picks the active language's text (Django's ``get_language()``: what
``LocaleMiddleware`` or ``translation.override`` set), falling back to the
base language and then to ``en``. :func:`check_description_languages` is the
Django half of validating them: the policy core checks their form, this
checks that Django knows each code.
"""

from __future__ import annotations

from django.conf.locale import LANG_INFO
from django.utils.translation import get_language

from stepup.policy.model import Description, PolicyError, PolicyFile, localized


def localized_description(description: Description, language: str | None = None) -> str:
    """``description`` in ``language`` (default: the active language), else in ``en``."""
    return localized(description, language if language is not None else get_language())


def unknown_languages(description: Description) -> list[str]:
    """The language codes of a per-language ``description`` that Django doesn't know."""
    return [] if isinstance(description, str) else [code for code in description if code not in LANG_INFO]


def unknown_language_message(code: str) -> str:
    return f"{code!r} is not a language Django knows (django.conf.locale.LANG_INFO)"


def check_description_languages(policy_file: PolicyFile) -> list[PolicyError]:
    """An error for each per-language description whose language code Django doesn't know."""
    return [
        PolicyError(
            spec.source, spec.line, f"policies[{index}].description.{code}", unknown_language_message(code)
        )
        for index, spec in enumerate(policy_file.policies)
        for code in unknown_languages(spec.description)
    ]
