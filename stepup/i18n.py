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


def check_description_languages(policy_file: PolicyFile) -> list[PolicyError]:
    """An error for each per-language description whose language code Django doesn't know."""
    errors: list[PolicyError] = []
    for index, spec in enumerate(policy_file.policies):
        if isinstance(spec.description, str):
            continue
        for code in spec.description:
            if code not in LANG_INFO:
                errors.append(
                    PolicyError(
                        spec.source,
                        spec.line,
                        f"policies[{index}].description.{code}",
                        f"{code!r} is not a language Django knows (django.conf.locale.LANG_INFO)",
                    )
                )
    return errors
