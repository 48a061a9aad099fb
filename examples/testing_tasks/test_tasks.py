"""Tests of the sign-up flow: each runs on a fresh in-memory runtime with a fake clock
(the ``runlane_memory`` fixture), and ``run_until_idle()`` runs the triggered work at once."""

from __future__ import annotations

import pytest

import runlane
from examples.testing_tasks import tasks
from runlane.testing import run_until_idle


@pytest.fixture
def outbox(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The emails the tasks send, instead of calling the provider."""
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(tasks, "deliver", lambda to, template: sent.append((to, template)))
    return sent


def test_onboarding_sends_the_tips_a_day_after_the_welcome(runlane_memory, outbox):
    handle = tasks.onboard_user.trigger({"email": "ada@example.com"})

    report = run_until_idle()

    run = runlane.runs.retrieve(handle)
    assert run.status == "COMPLETED"
    assert run.output == {"tips_sent": True}
    assert outbox == [("ada@example.com", "welcome"), ("ada@example.com", "first-tips")]
    assert report.advanced >= 24 * 3600  # wait.for_(days=1) passed on the fake clock


def test_a_failed_delivery_is_retried_after_its_backoff(runlane_memory, monkeypatch):
    outages = [ConnectionError("provider down")]

    def deliver_after_one_outage(to: str, template: str) -> None:
        if outages:
            raise outages.pop()

    monkeypatch.setattr(tasks, "deliver", deliver_after_one_outage)
    handle = tasks.send_email.trigger({"to": "ada@example.com", "template": "welcome"})

    report = run_until_idle()

    run = runlane.runs.retrieve(handle)
    assert run.status == "COMPLETED"
    assert [a.status for a in run.attempts] == ["FAILED", "COMPLETED"]
    assert report.advanced >= 1  # the first backoff: min_timeout_in_ms=1000


def test_a_provider_that_stays_down_fails_the_run(runlane_memory, monkeypatch):
    def deliver_never(to: str, template: str) -> None:
        raise ConnectionError("provider down")

    monkeypatch.setattr(tasks, "deliver", deliver_never)
    handle = tasks.send_email.trigger({"to": "ada@example.com", "template": "welcome"})

    run_until_idle()

    run = runlane.runs.retrieve(handle)
    assert run.status == "FAILED"
    assert run.attempt_count == 3
    assert run.error.name == "ConnectionError" and run.error.message == "provider down"


def test_a_delayed_email_waits_for_its_time(runlane_memory, runlane_clock, outbox):
    handle = tasks.send_email.trigger({"to": "ada@example.com", "template": "reminder"}, delay="2h")

    run_until_idle(advance_clock=False)  # only what is due now: nothing
    assert runlane.runs.retrieve(handle).status == "DELAYED"

    runlane_clock.advance(2 * 3600)
    run_until_idle()
    assert runlane.runs.retrieve(handle).status == "COMPLETED"
    assert outbox == [("ada@example.com", "reminder")]
