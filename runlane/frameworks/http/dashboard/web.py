"""The dashboard's router and who may use it.

A browser signs in with a secret key or a public access token (the login form, or a
``?token=`` link): it is kept in an HttpOnly, SameSite=Strict cookie beside a random session
nonce, and every request is authenticated with it by the API's own ``Authenticator``, exactly
as a ``Bearer`` header would be (a revoked key ends its sessions at once). A request that sends
``Authorization: Bearer`` itself is authenticated by it, as the API's routes are. POSTs from a
cookie session need the session's CSRF token (in the form or ``X-CSRF-Token``), an HMAC of
the nonce keyed by the credential, and are refused when the browser says they are cross-site.

Links are relative (``Ctx.root`` leads back to ``/dashboard`` from the page at hand), so the
dashboard works wherever the API is mounted (``runlane serve``, or under a framework's prefix).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from runlane.frameworks.http.api import ApiError, Request, Response, Route, Router, error_of
from runlane.frameworks.http.dashboard.html import Html, layout, tag

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime
    from runlane.frameworks.http.auth import Principal

log = logging.getLogger("runlane.http")
router = Router()

COOKIE = "runlane_dashboard"
_CREDENTIAL = re.compile(r"[A-Za-z0-9_\-.]{8,8192}")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
]


class NotSignedIn(Exception):
    """No credential, or one the API no longer accepts: a page sends the browser to login."""


@dataclass
class Ctx:
    """What a dashboard handler works with: the request, the way back to ``/dashboard``
    (``root``, relative), the caller and the session's CSRF token."""

    request: Request
    root: str
    depth: int
    csrf: str | None = None
    via_cookie: bool = False
    _form: dict[str, list[str]] | None = field(default=None, repr=False)

    @property
    def fragment(self) -> bool:
        """Only the live part of the page is asked for (``?fragment=1``: a refresh)."""
        return self.request.arg("fragment") is not None

    @property
    def rt(self) -> Runtime:
        return self.request.rt

    @property
    def principal(self) -> Principal:
        assert self.request.principal is not None
        return self.request.principal

    @property
    def is_secret(self) -> bool:
        return self.request.principal is not None and self.request.principal.is_secret

    def form(self, name: str, default: str = "") -> str:
        values = self.forms(name)
        return values[-1] if values else default

    def forms(self, name: str) -> list[str]:
        if self._form is None:
            self._form = parse_form(self.request)
        return self._form.get(name, [])

    def page(self, title: str, body: Any, status: int = 200) -> Response:
        return html_response(layout(title, body, root=self.root, csrf=self.csrf), status)

    def redirect(self, below: str) -> Response:
        """303 to ``/dashboard`` + ``below`` (e.g. "/runs/run_1"), relative to this page."""
        return redirect(self.root + below)

    def sub_path(self) -> str:
        """This request's path below ``/dashboard`` (undecoded)."""
        parts = self.request.path.split("/")
        return "/" + "/".join(parts[len(parts) - self.depth :]) if self.depth else ""


def parse_form(request: Request) -> dict[str, list[str]]:
    kind = (request.header("content-type") or "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded" or not request.body:
        return {}
    return parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)


def html_response(page: str, status: int = 200, headers: list[tuple[str, str]] | None = None):
    return Response(
        status,
        page.encode("utf-8"),
        [
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "no-store"),
            *(headers or []),
        ],
    )


def redirect(location: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(303, b"", [("location", location), *(headers or [])])


def wants_html(request: Request) -> bool:
    return "text/html" in (request.header("accept") or "") and request.arg("fragment") is None


# ---------------------------------------------------------------------- the session
def csrf_token(nonce: str, credential: str) -> str:
    mac = hmac.new(credential.encode(), b"runlane-dashboard-csrf\0" + nonce.encode(), "sha256")
    return mac.hexdigest()[:40]


def session_cookie(request: Request, credential: str) -> str:
    """The Set-Cookie of a new session (path: the folder of the login route, ``/dashboard``
    wherever it is mounted)."""
    secure = "; Secure" if (request.header("x-forwarded-proto") or "").lower() == "https" else ""
    nonce = secrets.token_hex(16)
    return f"{COOKIE}={nonce}.{credential}; HttpOnly; SameSite=Strict{secure}"


def clear_cookie() -> str:
    return f"{COOKIE}=; Max-Age=0; HttpOnly; SameSite=Strict"


def read_session(request: Request) -> tuple[str, str] | None:
    """(nonce, credential) of the session cookie, if there is a well-formed one."""
    for part in (request.header("cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            nonce, _, credential = value.partition(".")
            if re.fullmatch(r"[0-9a-f]{32}", nonce) and _CREDENTIAL.fullmatch(credential):
                return nonce, credential
    return None


def authenticate(request: Request, credential: str, access: str) -> Principal:
    """The principal of ``credential`` as the API's authenticator sees it for a route of
    ``access`` ("secret" or "public"): ApiError 401/403/429 as the API answers."""
    assert request.api is not None
    probe = replace(request, headers={**request.headers, "authorization": f"Bearer {credential}"})
    check = Route(request.method, request.path, _nothing, "dashboard", auth=access)
    principal: Principal = request.api.authenticator.authenticate(probe, check)
    request.principal = principal
    request.runtime = request.api.runtime_for(principal.environment)
    return principal


def _nothing(request: Request) -> None:
    return None


def _sign_in(ctx: Ctx, access: str) -> None:
    request = ctx.request
    header = request.header("authorization")
    if header:  # as the API's own routes: no cookie, no CSRF
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer":
            raise ApiError(401, "unauthorized", "expected 'Authorization: Bearer <key or token>'")
        authenticate(request, credential.strip(), access)
        return
    session = read_session(request)
    if session is None:
        raise NotSignedIn("sign in with a secret key or a public access token")
    nonce, credential = session
    try:
        authenticate(request, credential, access)
    except ApiError as exc:
        if exc.status == 401:
            raise NotSignedIn(exc.message) from None
        raise
    ctx.csrf, ctx.via_cookie = csrf_token(nonce, credential), True


def check_same_site(request: Request) -> None:
    if (request.header("sec-fetch-site") or "").lower() == "cross-site":
        raise ApiError(403, "csrf", "cross-site request refused")


def check_csrf(ctx: Ctx) -> None:
    check_same_site(ctx.request)
    sent = ctx.request.header("x-csrf-token") or ctx.form("csrf")
    if not ctx.csrf or not sent or not hmac.compare_digest(sent, ctx.csrf):
        raise ApiError(403, "csrf", "missing or wrong CSRF token: reload the page and try again")


# ---------------------------------------------------------------------- routes
def view(
    method: str, path: str, *, name: str, access: str = "secret"
) -> Callable[[Callable[[Ctx], Response]], Callable[[Ctx], Response]]:
    """Register a dashboard handler. ``access``: "secret" (a secret key), "public" (a key or
    any public token; the handler checks what the token may read), or "none"."""
    depth = path.count("/") - 1
    root = "../" * depth + "dashboard"

    def register(fn: Callable[[Ctx], Response]) -> Callable[[Ctx], Response]:
        def handle(request: Request) -> Response:
            ctx = Ctx(request, root, depth)
            try:
                token = request.arg("token") if method == "GET" and access != "none" else None
                if token:  # a link with a token: sign in with it, then come back
                    return ctx.redirect("/login" + _query(token=token, next=ctx.sub_path()))
                if access != "none":
                    _sign_in(ctx, access)
                    if method == "POST" and ctx.via_cookie:
                        check_csrf(ctx)
                response = fn(ctx)
            except NotSignedIn as exc:
                if method == "GET" and wants_html(request):
                    response = ctx.redirect("/login" + _query(next=ctx.sub_path()))
                else:
                    response = ApiError(401, "unauthorized", str(exc)).response()
            except Exception as exc:
                if not wants_html(request):
                    raise
                response = error_page(ctx, exc)
            response.headers.extend(SECURITY_HEADERS)
            return response

        handle.__doc__ = fn.__doc__
        router.route(method, path, name=name, auth="none", in_schema=False)(handle)
        return fn

    return register


def _query(**params: str) -> str:
    pairs = [f"{k}={quote(v, safe='/')}" for k, v in params.items() if v]
    return "?" + "&".join(pairs) if pairs else ""


def error_page(ctx: Ctx, exc: Exception) -> Response:
    error = error_of(exc)
    if error.status >= 500 and not isinstance(exc, ApiError):
        log.exception("%s %s failed", ctx.request.method, ctx.request.path)
    body = [
        tag("p", error.message, class_="error"),
        tag("p", tag("a", "Back to the runs", href=ctx.root)),
    ]
    if error.status == 403 and not ctx.is_secret:
        body.append(tag("p", tag("a", "Sign in with a secret key", href=f"{ctx.root}/login")))
    response = ctx.page(f"Error {error.status}", body, error.status)
    response.headers.extend(error.headers)
    return response


def static_page(ctx: Ctx, title: str, body: Any, status: int = 200) -> Response:
    return html_response(layout(title, body, root=ctx.root, signed_in=False), status)


__all__ = ["Ctx", "Html", "router", "view"]
