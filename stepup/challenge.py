"""The pending challenge: what a step-up refusal asks the user to verify for.

:func:`stepup.responses.build_challenge` makes one from a refused request,
:func:`stepup.pending.save_challenge` stores it server-side (``PendingChallenge.data``,
as :meth:`Challenge.to_dict`), and the verification flow reads it back
(:meth:`Challenge.from_dict`) by the random id the client was given. This is
the one place that knows the stored JSON shape; rows saved by an earlier
version (within ``CHALLENGE_TTL``) have the same shape, and anything
malformed in one reads as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Challenge:
    """One pending challenge; the defaults are a verification for nothing in particular.

    :ivar action: the declared action refused, if any.
    :ivar url_name: the URL name whose policies were included, if any.
    :ivar method: the refused request's method.
    :ivar path: the refused request's path and query string.
    :ivar attrs: its transaction attributes for display (strings, secrets redacted).
    :ivar digest: what a single-request grant answering it is bound to.
    :ivar policies: the ids of the policies that asked for step-up.
    :ivar descriptions: their descriptions, for the page.
    :ivar max_age: seconds the verification may be old; ``0`` for this one request.
    :ivar factors: acceptable factor kinds; empty means any kind.
    :ivar one_shot: whether answering it records a single-request grant.
    :ivar post: an interrupted form ``POST`` without its secret fields, to present again.
    :ivar post_secrets: the names of the secret fields left out, once per value.
    :ivar next: where to go after verifying.
    :ivar labels: attribute and form-field names in people's words (the view's ``labels``).
    :ivar display: attribute values as people read them (the view's ``display``).
    :ivar form_url: the page holding the form a refused ``POST`` came from, if known.
    :ivar download: the refused view answers with a file.
    """

    action: str | None = None
    url_name: str | None = None
    method: str = "GET"
    path: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    digest: str | None = None
    policies: tuple[str, ...] = ()
    descriptions: tuple[str, ...] = ()
    max_age: int = 0
    factors: tuple[str, ...] = ()
    one_shot: bool = False
    post: dict[str, list[str]] | None = None
    post_secrets: tuple[str, ...] = ()
    next: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    display: dict[str, str] = field(default_factory=dict)
    form_url: str | None = None
    download: bool = False

    @property
    def displayed(self) -> tuple[tuple[str, str], ...]:
        """``(label, value)`` per attribute, in people's words where the view gave them."""
        return tuple(
            (self.labels.get(name, name), self.display.get(name, value)) for name, value in self.attrs.items()
        )

    @property
    def is_form_post(self) -> bool:
        """Whether the refused request was a ``POST`` (or another unsafe method): never redo it by ``GET``."""
        return self.method not in ("GET", "HEAD", "OPTIONS")

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored in ``PendingChallenge.data``."""
        return {
            "action": self.action,
            "url_name": self.url_name,
            "method": self.method,
            "path": self.path,
            "attrs": dict(self.attrs),
            "digest": self.digest,
            "policies": list(self.policies),
            "descriptions": list(self.descriptions),
            "max_age": self.max_age,
            "factors": list(self.factors),
            "one_shot": self.one_shot,
            "post": self.post,
            "post_secrets": list(self.post_secrets),
            "next": self.next,
            "labels": dict(self.labels),
            "display": dict(self.display),
            "form_url": self.form_url,
            "download": self.download,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Challenge:
        """A stored challenge read back; a field of the wrong type reads as its default."""
        attrs, post, max_age = data.get("attrs"), data.get("post"), data.get("max_age")
        return cls(
            action=_string(data.get("action")),
            url_name=_string(data.get("url_name")),
            method=_string(data.get("method")) or "GET",
            path=_string(data.get("path")),
            attrs={str(k): str(v) for k, v in attrs.items()} if isinstance(attrs, Mapping) else {},
            digest=_string(data.get("digest")),
            policies=_strings(data.get("policies")),
            descriptions=tuple(d for d in _strings(data.get("descriptions")) if d.strip()),
            max_age=max_age if isinstance(max_age, int) and not isinstance(max_age, bool) else 0,
            factors=_strings(data.get("factors")),
            one_shot=data.get("one_shot") is True,
            post=_post(post) if isinstance(post, Mapping) else None,
            post_secrets=_strings(data.get("post_secrets")),
            next=_string(data.get("next")),
            labels=_string_map(data.get("labels")),
            display=_string_map(data.get("display")),
            form_url=_string(data.get("form_url")),
            download=data.get("download") is True,
        )


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def _post(post: Mapping[Any, Any]) -> dict[str, list[str]]:
    return {str(k): [str(v) for v in values] for k, values in post.items() if isinstance(values, list)}
