"""Signing in and out, the static files, and the live feed: the realtime SSE routes
(``/realtime/v1/...``) on behalf of a cookie session, since a browser's EventSource cannot
send an ``Authorization`` header."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from urllib.parse import quote

from runlane.frameworks.http.api import ApiError, Request, Response
from runlane.frameworks.http.dashboard.html import tag
from runlane.frameworks.http.dashboard.web import (
    Ctx,
    authenticate,
    check_same_site,
    clear_cookie,
    read_session,
    redirect,
    session_cookie,
    static_page,
    view,
    wants_html,
)

_NEXT = re.compile(r"(/(?!\.\.?(?:/|$))[A-Za-z0-9_\-.:@%+~]+)*")  # a path below /dashboard
_STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def _next(value: str | None) -> str:
    """Where to go after signing in: a path below /dashboard, else the runs."""
    return value if value and _NEXT.fullmatch(value) else ""


def _login_form(ctx: Ctx, next_: str, error: str | None = None, status: int = 200) -> Response:
    form = tag(
        "form",
        tag("p", error, class_="error", id="login-error") if error else None,
        tag(
            "label",
            "Secret key or public access token",
            tag(
                "input",
                type="password",
                name="key",
                autocomplete="off",
                required=True,
                autofocus=True,
                id="key",
            ),
        ),
        tag("input", type="hidden", name="next", value=next_),
        tag("button", "Sign in", type="submit", id="sign-in"),
        method="post",
        action=f"{ctx.root}/login",
        class_="login",
    )
    hint = tag(
        "p",
        "A secret key of this environment (",
        tag("code", "runlane keys create"),
        ", or RUNLANE_SECRET_KEY) sees everything; a public access token, the runs it may read.",
        class_="muted",
    )
    return static_page(ctx, "Sign in", [form, hint], status)


def _signed_in(ctx: Ctx, credential: str, next_: str) -> Response:
    """Check ``credential`` as the API would; a session cookie and the page it was going to."""
    request = ctx.request
    try:
        if not re.fullmatch(r"[A-Za-z0-9_\-.]{8,8192}", credential):
            raise ApiError(401, "unauthorized", "not a secret key nor a public access token")
        authenticate(request, credential, "public")
    except ApiError as exc:
        if exc.status != 401 or not wants_html(request):
            raise
        return _login_form(ctx, next_, f"Refused: {exc.message}", 401)
    return redirect(ctx.root + next_, [("set-cookie", session_cookie(request, credential))])


@view("GET", "/dashboard/login", name="dashboardLoginForm", access="none")
def login_form(ctx: Ctx) -> Response:
    """The sign-in form; ``?token=`` signs in with a public access token (a shared link)."""
    next_ = _next(ctx.request.arg("next"))
    token = ctx.request.arg("token")
    if token:
        return _signed_in(ctx, token.strip(), next_)
    return _login_form(ctx, next_)


@view("POST", "/dashboard/login", name="dashboardLogin", access="none")
def login(ctx: Ctx) -> Response:
    """Sign in with a secret key or a public access token."""
    check_same_site(ctx.request)
    return _signed_in(ctx, ctx.form("key").strip(), _next(ctx.form("next")))


@view("POST", "/dashboard/logout", name="dashboardLogout")
def logout(ctx: Ctx) -> Response:
    """Sign out (the session cookie is dropped)."""
    return redirect(f"{ctx.root}/login", [("set-cookie", clear_cookie())])


@view("GET", "/dashboard/static/{name}", name="dashboardStatic", access="none")
def static(ctx: Ctx) -> Response:
    """The dashboard's script and stylesheet."""
    name = ctx.request.params["name"]
    if name not in _STATIC:
        raise ApiError(404, "not_found", f"no file {name!r}")
    return Response(
        200, _file(name), [("content-type", _STATIC[name]), ("cache-control", "no-cache")]
    )


@cache
def _file(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


@view("GET", "/dashboard/live", name="dashboardLive", access="public")
def live(ctx: Ctx) -> Response:
    """Server-Sent Events of a run (``run``, ``streams``), of runs with tags (``tags``), of
    a batch (``batch``) or else of every run (``task``, ``status``): the realtime route's,
    for this session."""
    request = ctx.request
    assert request.api is not None
    arg = request.arg
    if arg("run"):
        path = "/realtime/v1/runs/" + quote(arg("run") or "", safe="")
        params = {"streams": arg("streams")}
    elif arg("batch"):
        path, params = "/realtime/v1/batches/" + quote(arg("batch") or "", safe=""), {}
    elif arg("tags"):
        path, params = "/realtime/v1/runs", {"tags": arg("tags")}
    else:
        path, params = "/realtime/v1/runs", {"task": arg("task"), "status": arg("status")}
    params["cursor"] = arg("cursor")
    session = read_session(request)
    header = request.header("authorization")
    if not header and session is not None:
        header = f"Bearer {session[1]}"
    headers = {"authorization": header or "", "accept": "text/event-stream"}
    if request.header("last-event-id"):
        headers["last-event-id"] = request.header("last-event-id") or ""
    inner = Request(
        "GET",
        request.api.prefix + path,
        "&".join(f"{k}={quote(v, safe=',')}" for k, v in params.items() if v),
        headers,
    )
    response = request.api.handle(inner)
    return response  # 404 without the realtime routes: the page polls instead
