"""The quick-start workload behind ``runlane demo``: import a CSV of customers.

An "upload" of N rows becomes one run per row, triggered with ``batch_trigger`` in chunks,
each tagged with the import and the customer's plan, keyed for idempotency (so a second upload
of the same rows returns the existing runs) and reporting its stage in metadata. A few rows
start later (``delay``), a few fail on purpose (an invalid email: no retry), a few fail their
first attempt and complete on a retry, and a welcome email is
scheduled for an hour later twice: one is canceled, the other rescheduled to now. A summary task
reads the import's runs back through ``runs.list``.

The tasks are plain runlane tasks; ``DemoImport`` is the "application" that triggers them. The
rendering (progress bar, tables) lives in ``runlane.cli.demo``.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import runlane
from runlane.core.models import FINAL_STATUSES, Run
from runlane.errors import AbortTaskRunError

ROW_TASK = "demo-import-row"
EMAIL_TASK = "demo-welcome-email"
SUMMARY_TASK = "demo-import-summary"
CHUNK = 100  # rows per batch_trigger call (a batch holds at most 500)
RESUBMITTED_SHARE = 4  # a quarter of the rows is uploaded twice

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}")
_FIRST = ["ada", "grace", "alan", "edsger", "barbara", "ken", "margaret", "linus", "guido", "radia"]
_LAST = ["lovelace", "hopper", "turing", "dijkstra", "liskov", "thompson", "hamilton", "torvalds"]
_DOMAINS = ["example.com", "example.org", "mail.test"]


@runlane.task(
    id=ROW_TASK,
    queue={"name": "csv-import"},
    retry={"max_attempts": 3, "min_timeout_in_ms": 200, "factor": 2, "randomize": False},
)
def import_row(row: dict[str, Any], ctx: runlane.Context) -> dict[str, Any]:
    """Validate and "save" one customer row, reporting its stage in metadata."""
    runlane.metadata.set("row", row["row"]).set("stage", "validating")
    email = row["email"].strip().lower()
    if not _EMAIL.fullmatch(email):
        runlane.metadata.set("stage", "rejected")
        raise AbortTaskRunError(f"row {row['row']}: invalid email {row['email']!r}")  # no retry
    runlane.metadata.set("stage", "saving")
    if _flaky(row["row"]) and ctx.attempt.number == 1:
        raise ConnectionError("CRM did not answer in time (simulated); retrying")
    time.sleep(0.004 + (row["row"] % 5) * 0.004)  # the database write of a real import
    runlane.logger.info("customer imported", row=row["row"], plan=row["plan"])
    runlane.metadata.set("stage", "done").set("progress", 1.0)
    return {"customer_id": f"cus_{row['row']:05d}", "email": email, "plan": row["plan"]}


@runlane.task(id=EMAIL_TASK, queue={"name": "emails"})
def welcome_email(payload: dict[str, Any]) -> dict[str, Any]:
    """Send the welcome email of a paid customer (scheduled an hour after the import)."""
    runlane.metadata.set("provider", "demo-smtp")
    return {"sent_to": payload["email"], "template": "welcome-paid"}


@runlane.task(id=SUMMARY_TASK)
def import_summary(payload: dict[str, Any]) -> dict[str, Any]:
    """Read the import's row runs back (``runs.list`` by tag) and summarize them."""
    statuses: Counter[str] = Counter()
    plans: Counter[str] = Counter()
    for run in runlane.runs.list(tag=payload["tag"], task_identifier=ROW_TASK, limit=100):
        statuses[run.status.value] += 1
        if run.status == "COMPLETED" and isinstance(run.output, dict):
            plans[run.output["plan"]] += 1
        runlane.metadata.increment("checked", 1)
    return {
        "import_id": payload["import_id"],
        "rows": sum(statuses.values()),
        "imported": statuses["COMPLETED"],
        "failed": statuses["FAILED"],
        "by_plan": dict(sorted(plans.items())),
    }


def make_rows(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` customer rows; every 29th (from row 7) has an invalid email."""
    rnd = random.Random(seed)
    rows = []
    for i in range(count):
        first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
        domain = rnd.choice(_DOMAINS)
        email = f"{first}.{last}{i}@{domain}"
        if i % 29 == 7:
            email = f"{first}.{last}{i}(at){domain}"
        plan = "paid" if rnd.random() < 0.3 else "free"
        rows.append(
            {
                "row": i,
                "name": f"{first.title()} {last.title()}",
                "email": email,
                "plan": plan,
                "account": f"acct_{i % 12:02d}",
            }
        )
    return rows


def _flaky(row: int) -> bool:
    """Every 50th row (from row 20) fails its first attempt, as a remote call sometimes does."""
    return row % 50 == 20


def _delay(row: int) -> str | None:
    """Every 40th row (from row 10) starts 2-4 seconds later."""
    return f"{2 + row % 3}s" if row % 40 == 10 else None


@dataclass
class DemoImport:
    """One run of the demo: trigger everything, then report what happened."""

    rows: int
    import_id: str = field(default_factory=lambda: secrets.token_hex(3))
    run_ids: list[str] = field(default_factory=list)
    batches: int = 0
    delayed: int = 0
    resubmitted: int = 0
    cached: int = 0
    new_on_resubmit: int = 0
    canceled_id: str | None = None
    rescheduled_id: str | None = None
    summary_id: str | None = None
    trigger_seconds: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def tag(self) -> str:
        return f"import_{self.import_id}"

    def _items(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items = []
        for row in rows:
            options: dict[str, Any] = {
                "tags": [self.tag, f"plan_{row['plan']}"],
                "idempotency_key": f"{self.tag}-row-{row['row']}",
                "concurrency_key": row["account"],
                "metadata": {"row": row["row"], "stage": "queued"},
            }
            if _delay(row["row"]):
                options["delay"] = _delay(row["row"])
            items.append({"payload": row, "options": options})
        return items

    def upload(self, rows: list[dict[str, Any]]) -> list[runlane.RunHandle]:
        handles: list[runlane.RunHandle] = []
        for start in range(0, len(rows), CHUNK):
            batch = import_row.batch_trigger(self._items(rows[start : start + CHUNK]))
            handles.extend(batch.runs)
        return handles

    def trigger_all(self) -> None:
        """The application side: upload, upload again, schedule emails, cancel, reschedule."""
        self.started_at = time.monotonic()
        data = make_rows(self.rows)
        handles = self.upload(data)
        self.batches = -(-len(data) // CHUNK)
        self.run_ids = [h.id for h in handles]
        self.delayed = sum(1 for row in data if _delay(row["row"]))
        again = self.upload(data[: max(1, len(data) // RESUBMITTED_SHARE)])
        self.resubmitted = len(again)
        self.cached = sum(1 for h in again if h.is_cached)
        self.new_on_resubmit = sum(1 for h in again if h.id not in set(self.run_ids))
        paid = [row for row in data if row["plan"] == "paid"][:2] or data[:2]
        emails = [
            welcome_email.trigger(
                {"email": row["email"]},
                delay="1h",
                tags=[self.tag, "welcome"],
                concurrency_key=row["account"],
            )
            for row in paid
        ]
        self.canceled_id = emails[0].id
        runlane.runs.cancel(emails[0])  # the customer unsubscribed
        if len(emails) > 1:
            self.rescheduled_id = emails[1].id
            runlane.runs.reschedule(emails[1], delay="1s")  # send it now-ish instead
        self.run_ids += [h.id for h in emails]
        self.trigger_seconds = time.monotonic() - self.started_at

    def import_runs(self) -> list[Run]:
        return list(runlane.runs.list(tag=self.tag, limit=100))

    def rows_done(self, runs: list[Run]) -> bool:
        rows = [r for r in runs if r.task_identifier != SUMMARY_TASK]
        return len(rows) >= len(self.run_ids) and all(r.status in FINAL_STATUSES for r in rows)

    def summarize(self) -> None:
        handle = runlane.tasks.trigger(
            SUMMARY_TASK,
            {"import_id": self.import_id, "tag": self.tag},
            tags=[self.tag],
        )
        self.summary_id = handle.id

    @property
    def total(self) -> int:
        return len(self.run_ids) + 1  # and the summary
