"""The signature schemes: Stripe, GitHub, Standard Webhooks (Svix), Slack and a generic HMAC.

Every scheme checks, in order: the body size, the headers it needs, the signature (an HMAC
over what the provider signs, compared in constant time with each signature given against
each secret: rotation), then the signed timestamp against the tolerance (replay protection
for the schemes that sign one), and only then parses the payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from runlane.contrib.webhooks.events import WebhookEvent, WebhookVerificationError
from runlane.errors import InvalidOptionError

DEFAULT_TOLERANCE = 300  # seconds
DEFAULT_MAX_BODY = 1024 * 1024  # bytes

Secrets = str | bytes | Sequence[str | bytes]


# ---------------------------------------------------------------------- helpers
def normalize_headers(headers: Any) -> dict[str, str]:
    """Any mapping or sequence of pairs (str or bytes) -> {lower-case name: value}."""
    items: Iterable[Any] = headers.items() if hasattr(headers, "items") else headers or ()
    out: dict[str, str] = {}
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        out[str(name).lower()] = str(value)
    return out


def secret_list(secret: Secrets) -> list[str | bytes]:
    items = [secret] if isinstance(secret, (str, bytes)) else list(secret or ())
    if not items or any(not isinstance(s, (str, bytes)) or not s for s in items):
        raise InvalidOptionError(
            "secret", "***", "give a non-empty string (or bytes), or a list of them for rotation"
        )
    return items


def to_epoch(now: float | datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise InvalidOptionError("now", now, "a datetime must be timezone-aware")
        return now.timestamp()
    return float(now)


def _hex(given: str) -> bytes | None:
    try:
        return bytes.fromhex(given.strip())
    except ValueError:
        return None


def _b64(given: str) -> bytes | None:
    try:
        return base64.b64decode(given.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _matches(expected: Iterable[bytes], given: Iterable[bytes | None]) -> bool:
    """Constant time per comparison; every pair is compared (no early exit on a match)."""
    found = False
    given = [g for g in given if g is not None]
    for digest in expected:
        for candidate in given:
            found |= hmac.compare_digest(digest, candidate)
    return found


def _json(body: bytes, provider: str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookVerificationError(
            "malformed_payload", f"the body is not JSON ({exc})", provider=provider
        ) from None


def _form(body: bytes, provider: str) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookVerificationError(
            "malformed_payload", f"the form body does not parse ({exc})", provider=provider
        ) from None


def _is_form(headers: Mapping[str, str]) -> bool:
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype == "application/x-www-form-urlencoded"


def _body_id(body: bytes) -> str:
    """An id for deliveries that carry none: the same body twice is the same delivery."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


# ---------------------------------------------------------------------- schemes
class Scheme:
    """One provider's way of signing. Subclasses implement ``check`` (headers and signature:
    returns the signed timestamp, or None) and ``event`` (payload, id and type)."""

    name: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()

    def key(self, secret: str | bytes) -> bytes:
        return secret.encode() if isinstance(secret, str) else secret

    def header(self, headers: Mapping[str, str], *names: str) -> str:
        for name in names:
            value = headers.get(name.lower(), "").strip()
            if value:
                return value
        raise WebhookVerificationError(
            "missing_header",
            f"the {names[0]} header is missing",
            provider=self.name,
            header=names[0],
        )

    def bad_signature(self, header: str, detail: str = "") -> WebhookVerificationError:
        message = f"no signature in {header} matches the secret"
        return WebhookVerificationError(
            "bad_signature", message + (f" ({detail})" if detail else ""),
            provider=self.name, header=header,
        )  # fmt: skip

    def check(self, body: bytes, headers: Mapping[str, str], keys: list[bytes]) -> int | None:
        raise NotImplementedError

    def event(self, body: bytes, headers: Mapping[str, str]) -> tuple[Any, str, str]:
        raise NotImplementedError

    def verify(
        self,
        *,
        body: bytes,
        headers: Any,
        secret: Secrets,
        tolerance: float | None = DEFAULT_TOLERANCE,
        now: float | datetime | None = None,
        max_body: int | None = DEFAULT_MAX_BODY,
    ) -> WebhookEvent:
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(
                "body must be the raw request body as bytes (signatures are over the exact "
                f"bytes sent), not {type(body).__name__}"
            )
        body = bytes(body)
        keys = [self.key(s) for s in secret_list(secret)]
        if max_body is not None and len(body) > max_body:
            raise WebhookVerificationError(
                "body_too_large", f"the body is over {max_body} bytes", provider=self.name
            )
        lowered = normalize_headers(headers)
        current = to_epoch(now)
        signed_at = self.check(body, lowered, keys)
        if signed_at is not None and tolerance is not None:
            if signed_at < current - tolerance:
                raise WebhookVerificationError(
                    "stale_timestamp",
                    f"signed {current - signed_at:.0f} s ago, over the {tolerance:g} s tolerance "
                    "(a replayed delivery, or a clock out of sync)",
                    provider=self.name,
                )
            if signed_at > current + tolerance:
                raise WebhookVerificationError(
                    "future_timestamp",
                    f"signed {signed_at - current:.0f} s in the future, over the {tolerance:g} s "
                    "tolerance (a clock out of sync)",
                    provider=self.name,
                )
        payload, event_id, event_type = self.event(body, lowered)
        return WebhookEvent(
            provider=self.name,
            id=event_id,
            type=event_type,
            payload=payload,
            received_at=datetime.fromtimestamp(current, UTC),
            timestamp=None if signed_at is None else datetime.fromtimestamp(signed_at, UTC),
            headers=lowered,
        )

    def timestamp(self, value: str, header: str) -> int:
        try:
            return int(value.strip())
        except ValueError:
            raise WebhookVerificationError(
                "malformed_header",
                f"the timestamp in {header} is not an integer",
                provider=self.name,
                header=header,
            ) from None


class Stripe(Scheme):
    """``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">[,v1=...]``: the
    secret is the endpoint's ``whsec_...`` string, used as is. Several ``v1`` entries are
    given while Stripe rolls a secret; any one matching is enough."""

    name = "stripe"
    HEADER = "Stripe-Signature"

    def check(self, body: bytes, headers: Mapping[str, str], keys: list[bytes]) -> int | None:
        raw = self.header(headers, self.HEADER)
        stamp: str | None = None
        given: list[str] = []
        for item in raw.split(","):
            name, _, value = item.strip().partition("=")
            if name == "t":
                stamp = value
            elif name == "v1":
                given.append(value)
        if stamp is None:
            raise WebhookVerificationError(
                "malformed_header", f"{self.HEADER} has no t=", provider=self.name,
                header=self.HEADER,
            )  # fmt: skip
        signed_at = self.timestamp(stamp, self.HEADER)
        if not given:
            raise self.bad_signature(self.HEADER, "no v1 signature")
        signed = stamp.strip().encode() + b"." + body
        expected = [hmac.new(k, signed, hashlib.sha256).digest() for k in keys]
        if not _matches(expected, map(_hex, given)):
            raise self.bad_signature(self.HEADER)
        return signed_at

    WHAT = "a Stripe event"  # what the body must be, for the error that says it is not

    def event(self, body: bytes, headers: Mapping[str, str]) -> tuple[Any, str, str]:
        payload = _json(body, self.name)
        if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
            raise WebhookVerificationError(
                "malformed_payload", f"the body is not {self.WHAT} (no id)", provider=self.name
            )
        return payload, payload["id"], str(payload.get("type") or "")


class Runlane(Stripe):
    """runlane's own alerts (``runlane.contrib.alerts``): ``X-Runlane-Signature: t=<unix
    time>,v1=<hex HMAC-SHA256 of "t.body">`` (Stripe's construction) keyed by the alert's
    secret as is; the id and type are the signed payload's ``id`` and ``type``."""

    name = "runlane"
    HEADER = "X-Runlane-Signature"
    WHAT = "a runlane alert"


class GitHub(Scheme):
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``; the id is
    ``X-GitHub-Delivery`` (kept by GitHub's redeliveries), the type ``X-GitHub-Event``. No
    time is signed, so replays are stopped by the idempotency key only. JSON and form
    (``payload=``) content types. The SHA-1 ``X-Hub-Signature`` is not accepted."""

    name = "github"
    HEADER = "X-Hub-Signature-256"

    def check(self, body: bytes, headers: Mapping[str, str], keys: list[bytes]) -> int | None:
        raw = self.header(headers, self.HEADER)
        algorithm, _, value = raw.partition("=")
        if algorithm.strip().lower() != "sha256" or not value:
            raise WebhookVerificationError(
                "malformed_header", f"{self.HEADER} is not sha256=<hex>", provider=self.name,
                header=self.HEADER,
            )  # fmt: skip
        expected = [hmac.new(k, body, hashlib.sha256).digest() for k in keys]
        if not _matches(expected, [_hex(value)]):
            raise self.bad_signature(self.HEADER)
        return None

    def event(self, body: bytes, headers: Mapping[str, str]) -> tuple[Any, str, str]:
        delivery = self.header(headers, "X-GitHub-Delivery")
        kind = self.header(headers, "X-GitHub-Event")
        if _is_form(headers):
            form = _form(body, self.name)
            if "payload" not in form:
                raise WebhookVerificationError(
                    "malformed_payload", "the form body has no payload field", provider=self.name
                )
            payload = _json(form["payload"].encode(), self.name)
        else:
            payload = _json(body, self.name)
        return payload, delivery, kind


class StandardWebhooks(Scheme):
    """Standard Webhooks (Svix, and the providers built on it): ``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature: v1,<base64> [v1,<base64> ...]`` (the
    ``svix-`` names too), HMAC-SHA256 of ``"id.timestamp.body"`` keyed by the base64 part of a
    ``whsec_...`` secret. The type is the payload's ``type``."""

    name = "standard"

    def key(self, secret: str | bytes) -> bytes:
        if isinstance(secret, bytes):
            return secret
        raw = secret.removeprefix("whsec_")
        key = _b64(raw)
        if key is None:
            raise InvalidOptionError(
                "secret", "***", "a Standard Webhooks secret is whsec_ followed by base64"
            )
        return key

    def check(self, body: bytes, headers: Mapping[str, str], keys: list[bytes]) -> int | None:
        msg_id = self.header(headers, "webhook-id", "svix-id")
        stamp = self.header(headers, "webhook-timestamp", "svix-timestamp")
        raw = self.header(headers, "webhook-signature", "svix-signature")
        signed_at = self.timestamp(stamp, "webhook-timestamp")
        given = []
        for item in raw.split():
            version, _, value = item.partition(",")
            if version == "v1" and value:
                given.append(_b64(value))
        if not given:
            raise self.bad_signature("webhook-signature", "no v1 signature")
        signed = f"{msg_id}.{stamp}.".encode() + body
        expected = [hmac.new(k, signed, hashlib.sha256).digest() for k in keys]
        if not _matches(expected, given):
            raise self.bad_signature("webhook-signature")
        return signed_at

    def event(self, body: bytes, headers: Mapping[str, str]) -> tuple[Any, str, str]:
        msg_id = self.header(headers, "webhook-id", "svix-id")
        payload = _json(body, self.name)
        kind = payload.get("type") if isinstance(payload, dict) else None
        return payload, msg_id, str(kind or "")


class Slack(Scheme):
    """``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:timestamp:body">`` keyed by the app's
    signing secret, ``X-Slack-Request-Timestamp``. Events API bodies are JSON (id: the
    ``event_id``, type: the inner event's type); slash commands and interactivity are
    form-encoded (id: the ``trigger_id``; type ``slash_command`` or the interaction type)."""

    name = "slack"
    HEADER = "X-Slack-Signature"
    TIME = "X-Slack-Request-Timestamp"

    def check(self, body: bytes, headers: Mapping[str, str], keys: list[bytes]) -> int | None:
        raw = self.header(headers, self.HEADER)
        stamp = self.header(headers, self.TIME)
        signed_at = self.timestamp(stamp, self.TIME)
        version, _, value = raw.partition("=")
        if version != "v0" or not value:
            raise WebhookVerificationError(
                "malformed_header", f"{self.HEADER} is not v0=<hex>", provider=self.name,
                header=self.HEADER,
            )  # fmt: skip
        signed = f"v0:{stamp}:".encode() + body
        expected = [hmac.new(k, signed, hashlib.sha256).digest() for k in keys]
        if not _matches(expected, [_hex(value)]):
            raise self.bad_signature(self.HEADER)
        return signed_at

    def event(self, body: bytes, headers: Mapping[str, str]) -> tuple[Any, str, str]:
        if _is_form(headers):
            form = _form(body, self.name)
            if "payload" in form:  # interactivity: a JSON document in a form field
                payload = _json(form["payload"].encode(), self.name)
                if not isinstance(payload, dict):
                    raise WebhookVerificationError(
                        "malformed_payload", "the interaction payload is not an object",
                        provider=self.name,
                    )  # fmt: skip
                kind = str(payload.get("type") or "")
                event_id = payload.get("trigger_id") or payload.get("action_ts")
            else:  # a slash command
                payload, kind = form, "slash_command"
                event_id = form.get("trigger_id")
            return payload, str(event_id or _body_id(body)), kind
        payload = _json(body, self.name)
        if not isinstance(payload, dict):
            raise WebhookVerificationError(
                "malformed_payload", "the body is not a JSON object", provider=self.name
            )
        kind = str(payload.get("type") or "")
        inner = payload.get("event")
        if kind == "event_callback" and isinstance(inner, dict) and inner.get("type"):
            kind = str(inner["type"])
        return payload, str(payload.get("event_id") or _body_id(body)), kind


_ENCODINGS = ("hex", "base64")


class Hmac(Scheme):
    """A generic HMAC: ``header`` holds ``prefix`` + the ``encoding`` ("hex" or "base64") of
    the ``algorithm`` (any hashlib name) HMAC of ``signed``, a template of ``{body}``,
    ``{timestamp}`` (from ``timestamp_header``, then checked against the tolerance) and
    ``{id}`` (from ``id_header``). ``separator``: several signatures in the header. The id is
    ``id_header``'s value, else the payload's ``id``, else a hash of the body; the type
    ``type_header``'s value, else the payload's ``type``."""

    name = "hmac"
    options = frozenset(
        {
            "header",
            "algorithm",
            "prefix",
            "encoding",
            "signed",
            "id_header",
            "type_header",
            "timestamp_header",
            "separator",
        }
    )

    def __init__(
        self,
        *,
        header: str = "X-Signature",
        algorithm: str = "sha256",
        prefix: str = "",
        encoding: str = "hex",
        signed: str = "{body}",
        id_header: str | None = None,
        type_header: str | None = None,
        timestamp_header: str | None = None,
        separator: str | None = None,
    ) -> None:
        if not header:
            raise InvalidOptionError("header", header, "name the header holding the signature")
        try:
            hashlib.new(algorithm)
        except (ValueError, TypeError):
            raise InvalidOptionError(
                "algorithm", algorithm, "must be a hashlib algorithm, e.g. sha256"
            ) from None
        if encoding not in _ENCODINGS:
            raise InvalidOptionError("encoding", encoding, f"must be one of {_ENCODINGS}")
        if signed.count("{body}") != 1:
            raise InvalidOptionError("signed", signed, "must contain {body} once")
        if "{timestamp}" in signed and not timestamp_header:
            raise InvalidOptionError("signed", signed, "{timestamp} needs a timestamp_header")
        if "{id}" in signed and not id_header:
            raise InvalidOptionError("signed", signed, "{id} needs an id_header")
        self.header_name = header
        self.algorithm = algorithm
        self.prefix = prefix
        self.encoding = encoding
        self.signed = signed
        self.id_header = id_header
        self.type_header = type_header
        self.timestamp_header = timestamp_header
        self.separator = separator

    def check(self, body: bytes, headers: Mapping[str, str], keys: list[bytes]) -> int | None:
        raw = self.header(headers, self.header_name)
        signed_at = stamp = None
        if self.timestamp_header:
            stamp = self.header(headers, self.timestamp_header)
            signed_at = self.timestamp(stamp, self.timestamp_header)
        msg_id = self.header(headers, self.id_header) if self.id_header else ""
        head, _, tail = self.signed.partition("{body}")

        def fill(text: str) -> bytes:
            return text.replace("{timestamp}", stamp or "").replace("{id}", msg_id).encode()

        message = fill(head) + body + fill(tail)
        values = raw.split(self.separator) if self.separator else [raw]
        decode = _hex if self.encoding == "hex" else _b64
        given = []
        for value in values:
            value = value.strip()
            if value.startswith(self.prefix):
                given.append(decode(value[len(self.prefix) :]))
        expected = [hmac.new(k, message, self.algorithm).digest() for k in keys]
        if not _matches(expected, given):
            raise self.bad_signature(self.header_name)
        return signed_at

    def event(self, body: bytes, headers: Mapping[str, str]) -> tuple[Any, str, str]:
        payload = _form(body, self.name) if _is_form(headers) else _json(body, self.name)
        record = payload if isinstance(payload, dict) else {}
        if self.id_header:
            event_id = self.header(headers, self.id_header)
        else:
            found = record.get("id")
            event_id = str(found) if isinstance(found, (str, int)) and found != "" else None
        if self.type_header:
            kind = headers.get(self.type_header.lower(), "")
        else:
            kind = str(record.get("type") or "")
        return payload, event_id or _body_id(body), kind


SCHEMES: dict[str, type[Scheme]] = {
    "stripe": Stripe,
    "runlane": Runlane,
    "github": GitHub,
    "standard": StandardWebhooks,
    "svix": StandardWebhooks,
    "slack": Slack,
    "hmac": Hmac,
}


def scheme_for(provider: str | Scheme, options: Mapping[str, Any] | None = None) -> Scheme:
    """A scheme from its name (``options`` for "hmac"), or the Scheme given."""
    options = dict(options or {})
    if isinstance(provider, Scheme):
        if options:
            raise InvalidOptionError(
                sorted(options)[0], "...", "configure a Scheme instance when you build it"
            )
        return provider
    cls = SCHEMES.get(provider) if isinstance(provider, str) else None
    if cls is None:
        raise InvalidOptionError(
            "provider", provider, f"must be one of {sorted(SCHEMES)} or a Scheme instance"
        )
    unknown = set(options) - cls.options
    if unknown:
        name = sorted(unknown)[0]
        known = sorted(cls.options) or "none"
        raise InvalidOptionError(name, options[name], f"not an option of {provider}: {known}")
    return cls(**options)


def verify(
    provider: str | Scheme,
    *,
    body: bytes,
    headers: Any,
    secret: Secrets,
    tolerance: float | None = DEFAULT_TOLERANCE,
    now: float | datetime | None = None,
    max_body: int | None = DEFAULT_MAX_BODY,
    **options: Any,
) -> WebhookEvent:
    """Verify one delivery and return its event, or raise ``WebhookVerificationError``.

    ``provider``: "stripe", "github", "standard" (or "svix"), "slack", "runlane" (runlane's own
    alerts), "hmac" (``options``: see ``Hmac``), or a ``Scheme``. ``body``: the raw bytes
    received. ``headers``: any mapping or pairs, any case. ``secret``: one secret or a list
    (rotation: any may match). ``tolerance``: seconds a signed timestamp may be off ``now``
    either way (None: unchecked). ``max_body``: bytes (None: no limit). Nothing is written or
    triggered."""
    return scheme_for(provider, options).verify(
        body=body, headers=headers, secret=secret, tolerance=tolerance, now=now, max_body=max_body
    )
