"""What a view tells stepup about presenting its refused request to the person verifying it.

Beside ``attributes=``, every enforcement point takes the same four optional
things (``require_stepup(..., labels=, display=, form_url=, download=)``,
the mixin's ``stepup_labels`` / ``get_stepup_display()`` / ``stepup_form_url``
/ ``stepup_download``, the same names on a DRF view, and keyword arguments
of :func:`stepup.enforce`):

- ``labels``: attribute (and form field) names to the words people read,
  e.g. ``{"amount": _("Amount")}``;
- ``display``: ``display(request, attributes) -> {name: text}``, the values
  as people read them (an IBAN in groups of four, "Grant access" for
  ``"grant"``). Names it leaves out are shown as they are; names that are
  not attributes are ignored; a secret-looking name is always redacted;
- ``form_url``: the page that holds the form a refused ``POST`` came from (a
  URL name or a path), where the user is sent back to submit it again when
  the ``POST`` can't be presented again. The request's ``Referer`` (on this
  site) is used when the view names none;
- ``download``: the view answers with a file, so after verification the user
  lands on a page that says so and starts the download.

None of this changes what is decided or bound: policies see, and
single-request grants are bound to, the raw attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch, reverse

from stepup.audit import REDACTED, is_secret_name

Display = Callable[[Any, Mapping[str, Any]], Mapping[str, Any]]
MAX_SHOWN = 2000
"""Characters of one displayed value kept in a challenge."""


@dataclass(frozen=True)
class Presentation:
    """How to present one refused request (see the module doc)."""

    labels: Mapping[str, Any] = field(default_factory=dict)
    display: Display | None = None
    form_url: str | None = None
    download: bool = False

    def label_map(self, names: Iterable[str]) -> dict[str, str]:
        """The labels of ``names`` that have one, as text in the active language."""
        return {name: str(self.labels[name]) for name in names if name in self.labels}

    def display_values(self, request: Any, attributes: Mapping[str, Any]) -> dict[str, str]:
        """The display values of ``attributes`` the view supplies; secrets stay redacted."""
        if self.display is None or not attributes:
            return {}
        values = self.display(request, attributes)
        if not isinstance(values, Mapping):
            raise TypeError(f"display() must return a mapping, got {type(values).__name__}")
        return {
            str(name): REDACTED if is_secret_name(str(name)) else _text(value)
            for name, value in values.items()
            if name in attributes and value is not None
        }

    def form_page(self, request: HttpRequest) -> str | None:
        """Where the refused request's form lives: ``form_url``, else the ``Referer`` on this site."""
        if self.form_url:
            try:
                return resolve_url(self.form_url)
            except NoReverseMatch:
                return None
        return local_referer(request)


def make(
    labels: Mapping[str, Any] | None = None,
    display: Display | None = None,
    form_url: str | None = None,
    download: bool = False,
    *,
    where: str = "require_stepup",
) -> Presentation:
    """A :class:`Presentation`, checked when the view is declared (a mistake fails at import)."""
    if labels is not None and not isinstance(labels, Mapping):
        raise TypeError(f"{where}: labels must be a mapping of names to labels, got {type(labels).__name__}.")
    if display is not None and not callable(display):
        raise TypeError(f"{where}: display must be a callable (request, attributes) -> dict.")
    if form_url is not None and not isinstance(form_url, str):
        raise TypeError(f"{where}: form_url must be a URL name or a path.")
    return Presentation(dict(labels or {}), display, form_url, bool(download))


def local_referer(request: HttpRequest) -> str | None:
    """The ``Referer``'s path and query when it is a page of this site other than stepup's own."""
    referer = request.headers.get("referer", "")
    if not referer or len(referer) > 2000:
        return None
    parts = urlsplit(referer)
    if parts.netloc and (parts.scheme not in ("http", "https") or parts.netloc != request.get_host()):
        return None
    path = parts.path
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return None
    if path == _verify_path():
        return None
    return f"{path}?{parts.query}" if parts.query else path


def _verify_path() -> str | None:
    try:
        return reverse("stepup:verify")
    except NoReverseMatch:
        return None


def _text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"
