"""HTML from Python: ``Html`` is markup already escaped, and everything else that reaches a page
is escaped on the way in (``esc``), so a tag, payload or error message can never become markup.
``tag()`` builds one element; ``layout()`` the page around a body."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

_VOID = {"input", "meta", "link", "br", "hr", "img"}


class Html(str):
    """Markup, escaped already: ``esc`` passes it through as it is."""


def esc(value: Any) -> Html:
    """``value`` as text inside markup (a list: each item, concatenated)."""
    if value is None:
        return Html("")
    if isinstance(value, Html):
        return value
    if isinstance(value, (list, tuple)) or hasattr(value, "__next__"):
        return Html("".join(esc(v) for v in value))
    return Html(html.escape(str(value), quote=True))


def tag(element: str, /, *children: Any, **attrs: Any) -> Html:
    """``<element attrs>children</element>``: ``class_="x"`` is ``class``, ``data_run="1"`` is
    ``data-run``; True is a bare attribute, None and False leave it out."""
    parts = [element]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        parts.append(attr if value is True else f'{attr}="{html.escape(str(value), quote=True)}"')
    opening = f"<{' '.join(parts)}>"
    if element in _VOID:
        return Html(opening)
    return Html(f"{opening}{esc(children)}</{element}>")


def when(value: datetime | None) -> Html:
    """A moment as UTC text in a ``<time>`` (empty for None)."""
    if value is None:
        return Html("")
    utc = value.astimezone(timezone.utc) if value.tzinfo else value
    text = utc.strftime("%Y-%m-%d %H:%M:%S")
    return tag("time", text, datetime=utc.strftime("%Y-%m-%dT%H:%M:%SZ"))


def duration(ms: float | None) -> str:
    if not ms:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def pretty(value: Any) -> Html:
    """A JSON value, indented, in a ``<pre>``."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return tag("pre", text, class_="json")


def status(value: Any) -> Html:
    text = getattr(value, "value", value)
    return tag("span", text, class_=f"status status-{str(text).lower()}", data_status=text)


def segment(value: str) -> str:
    """One path segment of a link (a queue's "task/x" stays one segment: %2F)."""
    return quote(value, safe="")


def query(params: Mapping[str, Any]) -> str:
    """``?a=1&b=2`` of the parameters that have a value ("" when none)."""
    pairs = [(k, v) for k, v in params.items() if v not in (None, "", [])]
    flat = [(k, x) for k, v in pairs for x in (v if isinstance(v, (list, tuple)) else [v])]
    return "?" + urlencode(flat) if flat else ""


def layout(
    title: str, body: Any, *, root: str, csrf: str | None = None, signed_in: bool = True
) -> Html:
    """The page: navigation, the body, the stylesheet and the one script (both from
    ``static/``, so the Content-Security-Policy needs no inline code)."""
    nav = tag(
        "nav",
        tag("a", "runlane", href=root, class_="brand"),
        tag("a", "Runs", href=root),
        tag("a", "Queues", href=f"{root}/queues"),
        tag("a", "Schedules", href=f"{root}/schedules"),
        tag("a", "Test run", href=f"{root}/trigger"),
        tag(
            "form",
            tag("input", type="hidden", name="csrf", value=csrf),
            tag("button", "Sign out", type="submit", class_="link"),
            method="post",
            action=f"{root}/logout",
            class_="signout",
        )
        if signed_in
        else None,
    )
    head = tag(
        "head",
        tag("meta", charset="utf-8"),
        tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
        tag("meta", name="csrf-token", content=csrf) if csrf else None,
        tag("title", f"{title} · runlane"),
        tag("link", rel="stylesheet", href=f"{root}/static/dashboard.css"),
        tag("script", src=f"{root}/static/dashboard.js", defer=True),
    )
    page = tag("html", head, tag("body", nav, tag("main", tag("h1", title), body)), lang="en")
    return Html("<!doctype html>\n" + page)


def table(headers: Iterable[str], rows: Any, **attrs: Any) -> Html:
    """A table of ``rows`` (``<tr>`` elements, built by the caller)."""
    head = tag("thead", tag("tr", [tag("th", h) for h in headers]))
    return tag("table", head, tag("tbody", rows), **attrs)


def live_section(
    body: Any,
    *,
    refresh: str | None,
    live: str | None = None,
    interval: int = 2000,
    keep: str | None = None,
) -> Html:
    """The part of a page that keeps itself current (dashboard.js): on each event of ``live``
    (a realtime route, through /dashboard/live) or, without one or when it fails, every
    ``interval`` ms, it is drawn again from ``refresh`` (the same view's ``?fragment=1``);
    ``keep``: a selector of what is left as it is meanwhile (a form being filled)."""
    return tag(
        "section",
        body,
        id="live",
        data_refresh=refresh,
        data_live=live,
        data_interval=str(interval),
        data_keep=keep,
    )
