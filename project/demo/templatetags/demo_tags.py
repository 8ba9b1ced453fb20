"""Template helpers for the demo's layout."""

from __future__ import annotations

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_link(context: template.Context, url_name: str, label: str) -> SafeString:
    """A nav link, marked ``aria-current="page"`` on its own page and the pages below it.

    Nothing when the URLconf lacks the name: stepup's own pages extend this
    layout (``templates/stepup/base.html``) and may be served without the demo's URLs.
    """
    try:
        url = reverse(url_name)
    except NoReverseMatch:
        return SafeString("")
    request = context.get("request")
    path = request.path if request is not None else ""
    current = path == url or (url != "/" and path.startswith(url))
    if current:
        return format_html('<a href="{}" aria-current="page">{}</a>', url, label)
    return format_html('<a href="{}">{}</a>', url, label)
