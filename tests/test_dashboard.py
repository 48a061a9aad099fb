"""The dashboard (``/dashboard``) on a real server with a worker: in Debian's headless Chromium
(Selenium, with the system's chromedriver: nothing is downloaded) the runs table updates while
runs complete, a run page shows logs and metadata live, bulk cancel, the test-run form, queue
pause/resume and sign-in work; over plain HTTP: authentication, CSRF, escaping and the CSP.

Screenshots of each page go to RUNLANE_SCREENSHOTS (default tests/.artifacts/screenshots).
Chromium missing: skipped locally, a failure in CI."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import runlane
from runlane.api import auth
from runlane.core import operations, runtime
from runlane.core import schedules as schedule_ops
from runlane.core.registry import registry
from tests.http_support import Server, serving

pytestmark = pytest.mark.timeout(120)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path(
    os.environ.get("RUNLANE_SCREENSHOTS") or Path(__file__).parent / ".artifacts/screenshots"
)
GATES: dict[str, threading.Event] = {}  # a gated run waits for its gate (by payload "gate")


def _gate(payload: Any) -> None:
    gate = GATES.setdefault(payload["gate"], threading.Event())
    assert gate.wait(60), "the test never opened the gate"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    previous = runtime.install(None)
    path = tmp_path_factory.mktemp("dashboard") / "dashboard.db"
    rt = runlane.configure(
        store=f"sqlite:///{path}", engine_interval=0.05, metadata_flush_interval=0.1
    )
    key, _ = operations.create_key(rt, "dashboard")

    @runlane.task(id="dash-echo")
    def echo(payload: Any) -> Any:
        return payload

    @runlane.task(id="dash-gated")
    def gated(payload: Any) -> Any:
        _gate(payload)
        return {"done": payload["gate"]}

    @runlane.task(id="dash-steps")
    def steps(payload: Any) -> Any:
        runlane.metadata.set("step", "first-step")
        with runlane.logger.trace("outer-span", size=3):
            runlane.logger.info("inside the span", item="alpha")
        runlane.metadata.flush()
        _gate(payload)
        runlane.metadata.set("step", "second-step")
        return {"ok": True}

    @runlane.schedules.task(id="dash-tick")
    def tick(payload: Any) -> None:
        return None

    tasks = [echo, gated, steps, tick]
    try:
        with serving(rt, key, with_worker=8) as s:
            yield s
    finally:
        for gate in GATES.values():
            gate.set()
        runtime.install(previous)
        rt.close()
        for task in tasks:  # (a module's fixture outlives the per-test registry reset)
            registry.remove(task.id)


def _html(client: httpx.Client, path: str, **kw: Any) -> httpx.Response:
    return client.get(path, headers={"accept": "text/html"}, **kw)


@contextlib.contextmanager
def _session(server: Server) -> Iterator[tuple[httpx.Client, str]]:
    """A client signed in through the login form, and its CSRF token."""
    with httpx.Client(base_url=server.url, timeout=30, headers={"accept": "text/html"}) as client:
        yield _signed_in(client, server)


def _signed_in(client: httpx.Client, server: Server) -> tuple[httpx.Client, str]:
    made = client.post("/dashboard/login", data={"key": server.key})
    assert made.status_code == 303 and "runlane_dashboard=" in made.headers["set-cookie"]
    cookie = made.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = client.get("/dashboard")
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert csrf is not None
    return client, csrf.group(1)


# ---------------------------------------------------------------------- plain HTTP
def test_pages_need_credentials(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = _html(client, "/dashboard/queues")
        assert page.status_code == 303 and page.headers["location"].endswith("/login?next=/queues")
        assert client.get("/dashboard").status_code == 401  # not a browser: no redirect
        assert client.post("/dashboard/bulk", data={"action": "cancel"}).status_code == 401
        client.cookies.set("runlane_dashboard", "0" * 32 + ".rl_dev_" + "x" * 40)
        assert _html(client, "/dashboard").status_code == 303  # a key the store never made
        refused = client.post("/dashboard/login", data={"key": "rl_dev_" + "y" * 40})
        assert refused.status_code == 401 and "set-cookie" not in refused.headers
        bearer = {"authorization": f"Bearer {server.key}"}
        assert client.get("/dashboard", headers=bearer).status_code == 200
        assert client.get("/healthz").status_code == 200  # the API's routes are untouched
        assert client.get("/api/v1/queues").status_code == 401


def test_post_actions_need_the_session_csrf_token(server: Server) -> None:
    with _session(server) as (client, csrf), _session(server) as (other, other_csrf):
        _csrf_checks(client, csrf, other, other_csrf)


def _csrf_checks(client: httpx.Client, csrf: str, other: httpx.Client, other_csrf: str) -> None:
    form = {"task": "dash-echo", "payload": "{}"}
    assert client.post("/dashboard/trigger", data=form).status_code == 403
    assert client.post("/dashboard/trigger", data={**form, "csrf": "0" * 40}).status_code == 403
    cross = client.post(
        "/dashboard/trigger", data={**form, "csrf": csrf}, headers={"sec-fetch-site": "cross-site"}
    )
    assert cross.status_code == 403
    made = client.post("/dashboard/trigger", data={**form, "csrf": csrf})
    assert made.status_code == 303 and "/runs/run_" in made.headers["location"]
    assert other_csrf != csrf  # another session: another token
    assert other.post("/dashboard/trigger", data={**form, "csrf": csrf}).status_code == 403


def test_everything_shown_is_escaped_and_the_csp_has_no_inline_code(server: Server) -> None:
    evil = "<script>alert(1)</script>"
    handle = runlane.tasks.trigger("dash-echo", {"html": evil}, tags=["<b>x"])
    with _session(server) as (client, _):
        _escaped(client, handle.id)


def _escaped(client: httpx.Client, run_id: str) -> None:
    for path in ("/dashboard", f"/dashboard/runs/{run_id}", "/dashboard?tag=<b>x"):
        page = client.get(path)
        assert page.status_code == 200, page.text
        assert "<script>alert" not in page.text and "<b>x" not in page.text
        assert "&lt;b&gt;x" in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get(f"/dashboard/runs/{run_id}").text
    script = client.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )


def test_a_token_link_shows_the_run_it_may_read(server: Server) -> None:
    handle = runlane.tasks.trigger("dash-echo", {"secret": "payload-not-shown"})
    other = runlane.tasks.trigger("dash-echo", {})
    token = auth.create_public_token(
        scopes={"read": {"runs": [handle.id]}}, expiration_time="1h", secret_key=server.key
    )
    with httpx.Client(base_url=server.url, timeout=30, headers={"accept": "text/html"}) as client:
        link = f"/dashboard/runs/{handle.id}?token={token}"
        page = client.get(link, follow_redirects=True)
        assert page.status_code == 200 and handle.id in page.text
        assert "payload-not-shown" not in page.text  # a token never sees a payload
        assert client.get(f"/dashboard/runs/{other.id}").status_code == 404
        assert client.get("/dashboard/queues").status_code == 403  # secret keys only


# ---------------------------------------------------------------------- in Chromium
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = (
            f"no headless browser: {', '.join(missing)} "
            "(apt-get install chromium chromium-driver; pip install selenium)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager never downloads a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    args = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000")
    for arg in args:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _until(driver: Any, predicate: Any, what: str, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: predicate(d), message=f"waiting for {what}"
    )


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _sign_in(driver: Any, server: Server) -> None:
    driver.get(server.url + "/dashboard")
    if "/dashboard/login" in driver.current_url:
        _css(driver, "#key")[0].send_keys(server.key)
        _css(driver, "#sign-in")[0].click()
        _until(driver, lambda d: _css(d, "table#runs"), "the runs table")


def _feed(driver: Any) -> str | None:
    return _css(driver, "section#live")[0].get_attribute("data-feed")


def _has_realtime_routes() -> bool:
    from runlane.frameworks.http.routes import ROUTERS

    return any(r.path == "/realtime/v1/runs" for router in ROUTERS for r in router.routes)


def _status_of(driver: Any, run_id: str) -> str | None:
    rows = _css(driver, f'tr[data-run-id="{run_id}"]')
    return rows[0].get_attribute("data-status") if rows else None


def test_sign_in_refuses_a_wrong_key_and_takes_the_right_one(browser: Any, server: Server) -> None:
    browser.delete_all_cookies()
    browser.get(server.url + "/dashboard/queues")
    _until(browser, lambda d: "/dashboard/login" in d.current_url, "the sign-in page")
    _css(browser, "#key")[0].send_keys("rl_dev_" + "z" * 40)
    _css(browser, "#sign-in")[0].click()
    error = _until(browser, lambda d: _css(d, "#login-error"), "the refusal")
    assert "Refused" in error[0].text
    _shot(browser, "login")
    _css(browser, "#key")[0].send_keys(server.key)
    _css(browser, "#sign-in")[0].click()
    _until(browser, lambda d: _css(d, "table#queues"), "the queues page it was going to")


def test_the_runs_table_updates_while_runs_complete(browser: Any, server: Server) -> None:
    _sign_in(browser, server)
    tag = f"live-{uuid.uuid4().hex[:8]}"
    gates = [f"{tag}-{i}" for i in range(3)]
    handles = [runlane.tasks.trigger("dash-gated", {"gate": g}, tags=[tag]) for g in gates]
    pages = (
        (f"/dashboard?tag={tag}", "sse"),
        ("/dashboard?from=2000-01-01T00:00:00", "poll"),  # no realtime route takes dates
        ("/dashboard", "sse"),  # every run's changes: the unfiltered table, watched below
    )
    for path, feed in pages:
        browser.get(server.url + path)
        browser.execute_script("window.notReloaded = true;")
        _until(browser, lambda d: all(_status_of(d, h.id) for h in handles), "the runs")
        if feed == "sse" and not _has_realtime_routes():
            feed = "poll"  # a server without the realtime routes: the table polls instead
        _until(browser, lambda d, f=feed: _feed(d) == f, f"the table's live feed ({feed})")
    late = runlane.tasks.trigger("dash-gated", {"gate": f"{tag}-late"}, tags=[tag])
    gates.append(f"{tag}-late")
    handles.append(late)
    _until(browser, lambda d: _status_of(d, late.id), "a new run to appear")
    _until(browser, lambda d: _status_of(d, handles[0].id) == "EXECUTING", "runs executing")
    _shot(browser, "runs")
    for g in gates:
        GATES.setdefault(g, threading.Event()).set()
    _until(
        browser,
        lambda d: all(_status_of(d, h.id) == "COMPLETED" for h in handles),
        "every run COMPLETED in the table",
    )
    assert browser.execute_script("return window.notReloaded === true;")
    assert _feed(browser) == feed  # live all along, not polling


def test_a_run_page_shows_logs_and_live_metadata(browser: Any, server: Server) -> None:
    _sign_in(browser, server)
    gate = f"steps-{uuid.uuid4().hex[:8]}"
    handle = runlane.tasks.trigger("dash-steps", {"gate": gate})
    browser.get(f"{server.url}/dashboard/runs/{handle.id}")
    browser.execute_script("window.notReloaded = true;")
    _until(browser, lambda d: "first-step" in _css(d, "#metadata")[0].text, "metadata")
    _until(
        browser, lambda d: _css(d, 'li[data-kind="span"] li[data-kind="log"]'), "a log in a span"
    )
    span = _css(browser, 'li[data-kind="span"]')[0].text
    assert "outer-span" in span and "inside the span" in span and "item=alpha" in span
    GATES.setdefault(gate, threading.Event()).set()
    _until(browser, lambda d: _css(d, '[data-final] [data-status="COMPLETED"]'), "COMPLETED")
    _until(browser, lambda d: "second-step" in _css(d, "#metadata")[0].text, "the new metadata")
    assert browser.execute_script("return window.notReloaded === true;")
    assert "Attempts" in browser.page_source and '"ok": true' in browser.page_source
    _shot(browser, "run")


def test_bulk_cancel_with_the_filters_after_a_confirmation(browser: Any, server: Server) -> None:
    _sign_in(browser, server)
    tag = f"bulk-{uuid.uuid4().hex[:8]}"
    handles = [
        runlane.tasks.trigger("dash-echo", {"n": i}, tags=[tag], delay="1h") for i in range(3)
    ]
    keep = runlane.tasks.trigger("dash-echo", {"n": 9}, delay="1h")
    browser.get(f"{server.url}/dashboard?tag={tag}")
    _until(browser, lambda d: all(_status_of(d, h.id) == "DELAYED" for h in handles), "the runs")
    _css(browser, "#bulk-cancel")[0].click()
    _until(browser, lambda d: _css(d, "#confirm"), "the confirmation")
    _shot(browser, "bulk-confirm")
    _css(browser, "#confirm")[0].click()
    result = _until(browser, lambda d: _css(d, "#bulk-result"), "the result")
    assert result[0].text.startswith("Canceled 3 runs")
    assert {runlane.runs.retrieve(h).status for h in handles} == {"CANCELED"}
    assert runlane.runs.retrieve(keep).status == "DELAYED"
    runlane.runs.cancel(keep)


def test_the_form_triggers_a_test_run(browser: Any, server: Server) -> None:
    _sign_in(browser, server)
    browser.get(server.url + "/dashboard/trigger")
    _css(browser, 'input[name="task"]')[0].send_keys("dash-echo")
    payload = _css(browser, 'textarea[name="payload"]')[0]
    payload.clear()
    payload.send_keys('{"from": "the form"}')
    _shot(browser, "trigger")
    _css(browser, "#trigger")[0].click()
    _until(browser, lambda d: "/dashboard/runs/run_" in d.current_url, "the new run's page")
    run_id = browser.current_url.rsplit("/", 1)[1]
    run = runlane.runs.retrieve(run_id)
    assert run.is_test and run.payload == {"from": "the form"}
    _until(browser, lambda d: _css(d, '[data-final] [data-status="COMPLETED"]'), "COMPLETED")


def test_pause_and_resume_a_queue(browser: Any, server: Server) -> None:
    _sign_in(browser, server)
    runlane.tasks.trigger("dash-echo", {})  # the queue exists
    browser.get(server.url + "/dashboard/queues")
    queue = "task/dash-echo"
    for action, paused in (("pause", True), ("resume", False)):
        button = f'button[data-queue="{queue}"][data-action="{action}"]'
        _until(browser, lambda d, b=button: _css(d, b), f"the {action} button")[0].click()
        _until(browser, lambda d, b=button: not _css(d, b), f"the page after {action}")
        assert operations.retrieve_queue(runtime.get(), queue).paused is paused
        if paused:
            _shot(browser, "queues")


def test_batch_and_schedule_pages(browser: Any, server: Server) -> None:
    _sign_in(browser, server)
    batch = runlane.tasks.batch_trigger("dash-echo", [{"payload": {"n": i}} for i in range(2)])
    schedule_ops.create_schedule(runtime.get(), task="dash-tick", cron_expression="*/5 * * * *")
    browser.get(f"{server.url}/dashboard/batches/{batch.batch_id}")
    _until(browser, lambda d: len(_css(d, "tr[data-run-id]")) == 2, "the batch's runs")
    _shot(browser, "batch")
    browser.get(server.url + "/dashboard/schedules")
    rows = _until(browser, lambda d: _css(d, "tr[data-schedule] ol li"), "next runs")
    assert len(rows) >= 3
    _shot(browser, "schedules")
