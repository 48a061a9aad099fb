"""The Django app: settings (override_settings reload), system checks naming a bad key,
autodiscovery, the URL include, the management command, on-commit triggers on PostgreSQL, and
the example project served for real (runserver + `manage.py runlane worker` on Redis)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")
psycopg = pytest.importorskip("psycopg")

import django  # noqa: E402
from django.conf import settings  # noqa: E402

import runlane  # noqa: E402
from runlane.core import runtime as runtime_mod  # noqa: E402
from runlane.errors import InvalidOptionError, RunNotFoundError  # noqa: E402

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "django_project"
KEY = "rl_dev_" + "a1" * 20
PG = "host=127.0.0.1 user=postgres"


def _pg() -> Any:
    try:
        return psycopg.connect(f"{PG} dbname=postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL is not reachable: {exc}")


@pytest.fixture(scope="module")
def pg_db() -> Iterator[str]:
    """A database of this module's own, dropped afterwards."""
    name = f"runlane_django_{uuid.uuid4().hex[:10]}"
    with _pg() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with _pg() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def dj(pg_db: str) -> Iterator[None]:
    """Django set up once for this module: the example's `orders` app, PostgreSQL, memory://."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=[
                "django.contrib.contenttypes",
                "django.contrib.auth",
                "runlane.frameworks.django",
                "orders",
            ],
            DATABASES={
                "default": {
                    "ENGINE": "django.db.backends.postgresql",
                    "NAME": pg_db,
                    "HOST": "127.0.0.1",
                    "USER": "postgres",
                }
            },
            ROOT_URLCONF="tests.django_settings",
            ALLOWED_HOSTS=["*"],
            USE_TZ=True,
            RUNLANE={"STORE_URL": "memory://", "SECRET_KEY": KEY},
        )
        django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    yield
    from django.db import connections

    connections.close_all()


@pytest.fixture
def fresh(dj: None) -> Iterator[None]:
    """A fresh memory:// runtime from settings.RUNLANE (the conftest isolates the registry, so
    the example's tasks are defined again)."""
    from django.test import override_settings

    with override_settings(RUNLANE={"STORE_URL": "memory://", "SECRET_KEY": KEY}):
        import importlib

        import orders.tasks

        importlib.reload(orders.tasks)
        yield


def _exists(run_id: str) -> bool:
    try:
        runlane.runs.retrieve(run_id)
    except RunNotFoundError:
        return False
    return True


# ---------------------------------------------------------------------- on commit
def test_trigger_in_atomic_is_created_on_commit_and_the_worker_finds_the_row(fresh: None):
    from django.db import transaction
    from orders.models import Order
    from orders.tasks import fulfil

    from runlane.testing import run_until_idle

    with transaction.atomic():
        order = Order.objects.create(item="book", quantity=2)
        handle = fulfil.trigger({"order_id": order.pk, "step_seconds": 0})
        assert not _exists(handle.id)  # created on commit, with the id the handle carries
    assert runlane.runs.retrieve(handle.id).status.value == "QUEUED"
    run_until_idle()
    run = runlane.runs.retrieve(handle.id)
    assert run.status.value == "COMPLETED", run.error
    assert run.output == {"order": order.pk, "items": 2}
    assert Order.objects.get(pk=order.pk).status == "fulfilled"


def test_rollback_drops_the_trigger(fresh: None):
    from django.db import transaction
    from orders.models import Order
    from orders.tasks import fulfil

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        order = Order.objects.create(item="pen")
        handle = fulfil.trigger({"order_id": order.pk})
        batch = runlane.tasks.batch_trigger("orders.fulfil", [{"payload": {"order_id": 1}}])
        raise Boom
    assert not _exists(handle.id)
    assert not _exists(batch.runs[0].id)
    assert runlane.runs.list().data == []


def test_on_commit_false_and_outside_a_transaction_trigger_at_once(fresh: None):
    from django.db import transaction
    from orders.tasks import fulfil

    outside = fulfil.trigger({"order_id": 0})
    assert _exists(outside.id)
    with transaction.atomic():
        now = fulfil.trigger({"order_id": 0}, on_commit=False)
        assert _exists(now.id)
        batch = runlane.tasks.batch_trigger(
            "orders.fulfil", [{"payload": {}, "options": {"on_commit": False}}]
        )
        assert _exists(batch.runs[0].id)
        with pytest.raises(InvalidOptionError, match="on_commit=False"):
            fulfil.trigger({"order_id": 0}, idempotency_key="k")
        keyed = fulfil.trigger({"order_id": 0}, idempotency_key="k", on_commit=False)
        assert _exists(keyed.id)
        deferred = runlane.tasks.batch_trigger("orders.fulfil", [{"payload": {}}])
        assert not _exists(deferred.runs[0].id)
    assert runlane.runs.retrieve(deferred.runs[0].id).batch_id == deferred.batch_id
    with pytest.raises(InvalidOptionError, match="on_commit"):
        fulfil.trigger({}, on_commit="no")


def test_on_commit_setting_off(dj: None):
    from django.db import transaction
    from django.test import override_settings

    off = {"STORE_URL": "memory://", "ON_COMMIT": False}
    with override_settings(RUNLANE=off), transaction.atomic():
        handle = runlane.tasks.trigger("anything", {})
        assert _exists(handle.id)


# ---------------------------------------------------------------------- settings, checks
def test_override_settings_reconfigures(dj: None):
    from django.test import override_settings

    before = runtime_mod.get()
    with override_settings(RUNLANE={"STORE_URL": "memory://", "ENVIRONMENT": "staging"}):
        assert runtime_mod.get().environment == "staging"
    assert runtime_mod.get() is not before  # configured again from the restored dict
    assert runtime_mod.get().environment == "dev"


@pytest.mark.parametrize(
    ("value", "check_id", "named"),
    [
        ("redis://x", "runlane.E001", "must be a dict"),
        ({"STORE_URI": "memory://"}, "runlane.E002", "'STORE_URI'"),
        ({"AUTODISCOVER": "yes"}, "runlane.E003", "'AUTODISCOVER'"),
        (
            {"STORE_URL": "memory://", "CONCURRENCY_LIMIT": -1},
            "runlane.E004",
            "'CONCURRENCY_LIMIT'",
        ),
        ({"STORE_URL": "ftp://nope"}, "runlane.E004", "'STORE_URL'"),
        ({"STORE_URL": "memory://", "ENVIRONMENT": "moon"}, "runlane.E004", "'ENVIRONMENT'"),
    ],
)
def test_system_checks_name_the_bad_setting(dj: None, value: Any, check_id: str, named: str):
    from django.core import checks
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    with override_settings(RUNLANE=value):
        errors = [e for e in checks.run_checks() if e.id.startswith("runlane.")]
        assert [e.id for e in errors] == [check_id], errors
        assert named in errors[0].msg
        with pytest.raises(ImproperlyConfigured, match=check_id):
            runlane.tasks.trigger("anything", {})
    assert not [e for e in checks.run_checks() if e.id.startswith("runlane.")]
    if check_id == "runlane.E002":
        assert "did you mean 'STORE_URL'" in errors[0].hint


def test_autodiscovery(dj: None):
    from runlane.frameworks.django.apps import autodiscover

    assert "orders.tasks" in autodiscover()
    assert "orders.fulfil" in runtime_mod.get().registry.ids()


def test_hooks_close_old_connections(fresh: None):
    from runlane.frameworks.django import connections

    hooks = runtime_mod.get().settings.hooks
    assert hooks["init"] is connections.init
    assert hooks["cleanup"] is connections.cleanup


# ---------------------------------------------------------------------- URL include, command
def test_url_include_answers_the_api_with_a_key(fresh: None):
    from django.test import Client

    handle = runlane.tasks.trigger("orders.fulfil", {"order_id": 0})
    client = Client()
    assert client.get("/runlane/healthz").json() == {"ok": True}
    assert client.get(f"/runlane/api/v3/runs/{handle.id}").status_code == 401
    auth = {"HTTP_AUTHORIZATION": f"Bearer {KEY}"}
    got = client.get(f"/runlane/api/v3/runs/{handle.id}", **auth)
    assert got.status_code == 200, got.content
    assert got.json()["id"] == handle.id
    made = client.post(
        "/runlane/api/v1/tasks/orders.fulfil/trigger",
        data=json.dumps({"payload": {"order_id": 0}}),
        content_type="application/json",
        **auth,
    )
    assert made.status_code == 200, made.content
    assert _exists(made.json()["id"])
    assert client.get("/runlane/nope", **auth).status_code == 404


def test_management_command(fresh: None, capsys: pytest.CaptureFixture[str]):
    from django.core.management import CommandError, call_command

    call_command("runlane", "trigger", "orders.fulfil", "--payload", '{"order_id": 7}')
    runs = runlane.runs.list().data
    assert [r.task_identifier for r in runs] == ["orders.fulfil"]
    call_command("runlane", "runs", "list")
    assert runs[0].id in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("runlane", "runs", "get", "run_nope")


# ---------------------------------------------------------------------- the example, for real
def _get(url: str, **headers: str) -> Any:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def _post(url: str, body: bytes, **headers: str) -> Any:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def test_example_project_end_to_end(pg_db: str, redis_url: str, tmp_path: Path):
    """runserver + `manage.py runlane worker` on Redis: a form post saves an order and
    triggers its task in one transaction; the worker reads the row; the page shows progress."""
    from tests.adapters import delete_redis_prefix
    from tests.conftest import _free_port

    prefix = f"rltest-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "EXAMPLE_DB_NAME": pg_db,
        "PGUSER": "postgres",
        "PGHOST": "127.0.0.1",
        "RUNLANE_STORE_URL": f"{redis_url}?prefix={prefix}",
        "RUNLANE_SECRET_KEY": KEY,
        "STRIPE_WEBHOOK_SECRET": "whsec_test_secret",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(EXAMPLE)]),
        "PYTHONUNBUFFERED": "1",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=EXAMPLE, env=env, check=True, timeout=60)
    port = _free_port()
    logs = [open(tmp_path / "server.log", "w"), open(tmp_path / "worker.log", "w")]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=EXAMPLE, env=env, stdout=logs[0],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [*manage, "runlane", "worker", "--concurrency", "2"],
            cwd=EXAMPLE, env=env, stdout=logs[1],
            stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"{base}/runlane/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        data = urllib.parse.urlencode({"item": "lamp", "quantity": "3"}).encode()
        with urllib.request.urlopen(f"{base}/", data=data, timeout=10) as response:
            page = response.read().decode()
            order_url = response.url
        assert "Order #" in page and "lamp" in page
        status: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = json.loads(_get(order_url + "status.json"))
            if status["run_status"] in ("COMPLETED", "FAILED", "CRASHED"):
                break
            time.sleep(0.2)
        assert status["run_status"] == "COMPLETED", (
            status,
            (tmp_path / "worker.log").read_text()[-3000:],
        )
        assert status["order_status"] == "fulfilled" and status["progress"] == 1
        run = json.loads(
            _get(f"{base}/runlane/api/v3/runs/{status['run']}", Authorization=f"Bearer {KEY}")
        )
        assert run["status"] == "COMPLETED"
        listed = subprocess.run(
            [*manage, "runlane", "runs", "list"],
            cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert status["run"] in listed.stdout, listed.stderr
        # the Stripe webhook endpoint: signed as Stripe signs ("t.body", v1=HMAC-SHA256)
        event = {"id": "evt_1", "type": "charge.succeeded", "data": {"object": {"id": "ch_1"}}}
        body = json.dumps(event).encode()
        stamp = str(int(time.time()))
        mac = hmac.new(b"whsec_test_secret", f"{stamp}.".encode() + body, hashlib.sha256)
        signed = {"Stripe-Signature": f"t={stamp},v1={mac.hexdigest()}"}
        first = json.loads(_post(f"{base}/webhooks/stripe/", body, **signed))
        again = json.loads(_post(f"{base}/webhooks/stripe/", body, **signed))
        assert again == {**first, "isCached": True}
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(f"{base}/webhooks/stripe/", body, **{"Stripe-Signature": f"t={stamp},v1=00"})
        assert refused.value.code == 401
        refused.value.close()  # (its response's socket)
        seen: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = json.loads(
                _get(f"{base}/runlane/api/v3/runs/{first['id']}", Authorization=f"Bearer {KEY}")
            )
            if seen["status"] == "COMPLETED":
                break
            time.sleep(0.2)
        assert seen.get("output") == {"event": "charge.succeeded", "object": "ch_1"}, seen
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
        delete_redis_prefix(redis_url, prefix)
