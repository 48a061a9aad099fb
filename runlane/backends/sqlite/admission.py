"""Admission before dispatch, in SQLite (DESIGN §3.2).

A QUEUED run waits in its sub-queue (queue + concurrency key) until it can hold a slot in the
sub-queue (the queue's ``concurrency_limit`` applies per key), in the queue's total
(``total_limit``, all keys together) and in the environment (``concurrency_limit`` of
``configure``). Admitted runs go to ``rl_ready`` (the outbox the engine sends to the broker).

Fairness: each pass admits at most one run per sub-queue, least recently served sub-queue
first (round robin), FIFO within a sub-queue by ``queue_ts``. A FROZEN run keeps its queue slot
(its environment slot is freed or handed on) and lends it to the children it waits on in the
same sub-queue, one at a time, so recursive waits on a limit-1 queue cannot deadlock.

Every function runs inside the caller's write transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

MAX_PER_CALL = 10_000


def _counter(conn: sqlite3.Connection, env: str, name: str, delta: int = 0) -> int:
    if delta == 0:
        row = conn.execute(
            "SELECT value FROM rl_counters WHERE env=? AND name=?", (env, name)
        ).fetchone()
        return 0 if row is None else int(row[0])
    row = conn.execute(
        "INSERT INTO rl_counters VALUES (?, ?, ?) ON CONFLICT (env, name) "
        "DO UPDATE SET value = value + excluded.value RETURNING value",
        (env, name, delta),
    ).fetchone()
    return int(row[0])


def env_running(conn: sqlite3.Connection, env: str) -> int:
    return _counter(conn, env, "running")


def upsert_queue(
    conn: sqlite3.Connection,
    env: str,
    name: str,
    limit: int | None,
    total: int | None,
    *,
    update: bool = True,
) -> None:
    """Create a queue; with ``update`` also set the limits given (task registration,
    trigger-time queue options): the latest definition of a limit wins, and a definition that
    names the queue without a limit (``queue="llm"``) leaves its limits as they are."""
    if update:
        conn.execute(
            "INSERT INTO rl_queues (env, name, concurrency_limit, total_limit) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (env, name) DO UPDATE SET "
            "concurrency_limit = COALESCE(excluded.concurrency_limit, concurrency_limit), "
            "total_limit = COALESCE(excluded.total_limit, total_limit)",
            (env, name, limit, total),
        )
    else:
        conn.execute(
            "INSERT OR IGNORE INTO rl_queues (env, name, concurrency_limit, total_limit) "
            "VALUES (?, ?, ?, ?)",
            (env, name, limit, total),
        )


def enqueue(conn: sqlite3.Connection, env: str, run_id: str, queue: str, ckey: str) -> None:
    """A run became QUEUED and waits for its slots (its row is already QUEUED, admitted=0)."""
    upsert_queue(conn, env, queue, None, None, update=False)
    conn.execute(
        "INSERT INTO rl_subqueues (env, queue, ckey, waiting) VALUES (?, ?, ?, 1) "
        "ON CONFLICT (env, queue, ckey) DO UPDATE SET waiting = waiting + 1",
        (env, queue, ckey),
    )


def leave_waiting(conn: sqlite3.Connection, env: str, queue: str, ckey: str) -> None:
    """A waiting (not admitted) run left the line: canceled or expired."""
    conn.execute(
        "UPDATE rl_subqueues SET waiting = MAX(waiting - 1, 0) WHERE env=? AND queue=? AND ckey=?",
        (env, queue, ckey),
    )


def _ready(conn: sqlite3.Connection, env: str, run_id: str) -> None:
    conn.execute("UPDATE rl_runs SET admitted=1 WHERE env=? AND id=?", (env, run_id))
    conn.execute("INSERT OR IGNORE INTO rl_ready VALUES (?, ?)", (env, run_id))


def _paused(paused: int, until: float | None, now: float) -> bool:
    return bool(paused) and (until is None or until > now)


def admit(
    conn: sqlite3.Connection,
    env: str,
    now: float,
    env_limit: int | None,
    queues: Collection[str] | None = None,
    subqueue: tuple[str, str] | None = None,
) -> int:
    """Admit every run that fits, fairly; returns how many were admitted. ``subqueue``: only
    that (queue, key) gained room (its other keys are independent unless the queue has a
    total limit, which the caller checks)."""
    admitted = 0
    running = env_running(conn, env)

    def env_free() -> int | None:
        return None if env_limit is None else max(0, env_limit - running)

    # 1. resumed runs already hold their queue slot: they only need an environment slot
    free = env_free()
    if free is None or free > 0:
        rows = conn.execute(
            "SELECT r.id FROM rl_runs r INDEXED BY rl_runs_resumed "
            "WHERE r.env=? AND r.status='QUEUED' AND r.resume=1 AND r.admitted=0 "
            "ORDER BY r.queue_ts LIMIT ?",
            (env, MAX_PER_CALL if free is None else free),
        ).fetchall()
        for (run_id,) in rows:
            conn.execute(
                "UPDATE rl_slots SET holds_env=1 WHERE env=? AND run_id=? AND holds_env=0",
                (env, run_id),
            )
            running += 1
            admitted += 1
            _ready(conn, env, run_id)
        if rows:
            _counter(conn, env, "running", len(rows))

    # 2. sub-queues, round robin
    if queues is not None and not queues and subqueue is None:
        return admitted
    where = "sq.env=? AND sq.waiting > 0"
    args: list[object] = [env]
    if subqueue is not None:
        where += " AND sq.queue = ? AND sq.ckey = ?"
        args += list(subqueue)
    elif queues is not None:
        where += f" AND sq.queue IN ({', '.join('?' for _ in queues)})"
        args += list(queues)
    candidates = [
        dict(r)
        for r in conn.execute(
            "SELECT sq.queue, sq.ckey, sq.waiting, sq.running, sq.paused AS kpaused, "
            "sq.paused_until AS kuntil, q.concurrency_limit, q.total_limit, q.paused, "
            f"q.paused_until FROM rl_subqueues sq JOIN rl_queues q ON q.env = sq.env AND "
            f"q.name = sq.queue WHERE {where} ORDER BY sq.served_seq",
            args,
        )
    ]
    totals = (
        {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT name, running FROM rl_queues WHERE env=? AND name IN "
                f"({', '.join('?' for _ in {c['queue'] for c in candidates})})",
                (env, *{c["queue"] for c in candidates}),
            )
        }
        if candidates
        else {}
    )
    candidates = [
        c
        for c in candidates
        if not _paused(c["paused"], c["paused_until"], now)
        and not _paused(c["kpaused"], c["kuntil"], now)
    ]
    contended = env_limit is not None or any(c["total_limit"] is not None for c in candidates)
    while candidates and admitted < MAX_PER_CALL:
        progress = False
        for c in list(candidates):
            free = env_free()
            if free == 0:
                return admitted
            room = c["waiting"]
            if c["concurrency_limit"] is not None:
                room = min(room, c["concurrency_limit"] - c["running"])
            if c["total_limit"] is not None:
                room = min(room, c["total_limit"] - totals[c["queue"]])
            if free is not None:
                room = min(room, free)
            if room <= 0:
                candidates.remove(c)
                continue
            take = 1 if contended else min(room, MAX_PER_CALL - admitted)
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM rl_runs WHERE env=? AND queue=? AND ckey=? AND "
                    "status='QUEUED' AND admitted=0 AND resume=0 ORDER BY queue_ts, id LIMIT ?",
                    (env, c["queue"], c["ckey"], take),
                )
            ]
            if not ids:  # the counter drifted (should not happen): repair it
                conn.execute(
                    "UPDATE rl_subqueues SET waiting=0 WHERE env=? AND queue=? AND ckey=?",
                    (env, c["queue"], c["ckey"]),
                )
                candidates.remove(c)
                continue
            n = len(ids)
            conn.executemany(
                "INSERT INTO rl_slots (env, run_id, queue, ckey, holds_queue, holds_env) "
                "VALUES (?, ?, ?, ?, 1, 1)",
                [(env, run_id, c["queue"], c["ckey"]) for run_id in ids],
            )
            for run_id in ids:
                _ready(conn, env, run_id)
            seq = _counter(conn, env, "served", 1)
            conn.execute(
                "UPDATE rl_subqueues SET waiting = waiting - ?, running = running + ?, "
                "served_seq = ? WHERE env=? AND queue=? AND ckey=?",
                (n, n, seq, env, c["queue"], c["ckey"]),
            )
            conn.execute(
                "UPDATE rl_queues SET running = running + ? WHERE env=? AND name=?",
                (n, env, c["queue"]),
            )
            _counter(conn, env, "running", n)
            running += n
            totals[c["queue"]] += n
            c["waiting"] -= n
            c["running"] += n
            admitted += n
            progress = True
        if not progress:
            break
    lend_queues = [subqueue[0]] if subqueue is not None else queues
    return admitted + _lend_blocked(conn, env, env_free(), lend_queues)


def _lend_blocked(
    conn: sqlite3.Connection, env: str, env_free: int | None, queues: Collection[str] | None
) -> int:
    """FROZEN runs holding an idle queue slot lend it to a child they wait on."""
    if env_free == 0:
        return 0
    where = (
        "s.env=? AND s.lent_to IS NULL AND r.status='FROZEN' AND NOT EXISTS (SELECT 1 FROM "
        "rl_queues q WHERE q.env = s.env AND q.name = s.queue AND q.paused = 1) AND NOT EXISTS "
        "(SELECT 1 FROM rl_subqueues sq WHERE sq.env = s.env AND sq.queue = s.queue AND "
        "sq.ckey = s.ckey AND sq.paused = 1)"
    )
    args: list[object] = [env]
    if queues is not None:
        where += f" AND s.queue IN ({', '.join('?' for _ in queues)})"
        args += list(queues)
    lenders = conn.execute(
        "SELECT s.run_id FROM rl_runs r INDEXED BY rl_runs_status JOIN rl_slots s "
        f"ON s.env = r.env AND s.run_id = r.id WHERE r.env = ? AND {where} ORDER BY r.queue_ts",
        [env, *args],
    ).fetchall()
    lent = 0
    for (lender,) in lenders:
        if env_free is not None and lent >= env_free:
            break
        if _lend(conn, env, lender):
            lent += 1
    return lent


def release(
    conn: sqlite3.Connection, env: str, run_id: str, *, keep_queue_slot: bool = False
) -> tuple[str, str] | None:
    """Give back the run's slots (``keep_queue_slot``: a FROZEN run keeps its queue slot, to
    lend to the children it waits on). Returns the sub-queue (queue, key) whose capacity
    changed, for the caller's admission pass."""
    slot = conn.execute("SELECT * FROM rl_slots WHERE env=? AND run_id=?", (env, run_id)).fetchone()
    if slot is None:
        return None
    if slot["holds_env"]:
        _counter(conn, env, "running", -1)
    if keep_queue_slot:
        conn.execute("UPDATE rl_slots SET holds_env=0 WHERE env=? AND run_id=?", (env, run_id))
        return slot["queue"], slot["ckey"]
    conn.execute("DELETE FROM rl_slots WHERE env=? AND run_id=?", (env, run_id))
    if slot["lent_to"] is not None and (slot["holds_queue"] or slot["borrowed_from"]):
        # the borrower still runs in this queue slot: it keeps it (as its own, or as the
        # lender's lender's loan), so the count stays exact
        conn.execute(
            "UPDATE rl_slots SET holds_queue=?, borrowed_from=? WHERE env=? AND run_id=?",
            (slot["holds_queue"], slot["borrowed_from"], env, slot["lent_to"]),
        )
        if slot["borrowed_from"] is not None:
            conn.execute(
                "UPDATE rl_slots SET lent_to=? WHERE env=? AND run_id=?",
                (slot["lent_to"], env, slot["borrowed_from"]),
            )
        return slot["queue"], slot["ckey"]
    if slot["borrowed_from"] is not None:  # the lender gets its slot back (to lend again)
        conn.execute(
            "UPDATE rl_slots SET lent_to=NULL WHERE env=? AND run_id=? AND lent_to=?",
            (env, slot["borrowed_from"], run_id),
        )
    elif slot["holds_queue"]:
        conn.execute(
            "UPDATE rl_subqueues SET running = MAX(running - 1, 0) WHERE env=? AND queue=? "
            "AND ckey=?",
            (env, slot["queue"], slot["ckey"]),
        )
        conn.execute(
            "UPDATE rl_queues SET running = MAX(running - 1, 0) WHERE env=? AND name=?",
            (env, slot["queue"]),
        )
    return slot["queue"], slot["ckey"]


def _is_descendant(conn: sqlite3.Connection, env: str, run_id: str, ancestor: str) -> bool:
    current = run_id
    for _ in range(256):
        row = conn.execute(
            "SELECT parent_id FROM rl_runs WHERE env=? AND id=?", (env, current)
        ).fetchone()
        if row is None or row[0] is None:
            return False
        if row[0] == ancestor:
            return True
        current = row[0]
    return False


def _lend(conn: sqlite3.Connection, env: str, lender: str) -> bool:
    """A FROZEN run lends its queue slot to the oldest waiting descendant in the same
    sub-queue (a child it waits on, or deeper: parent → child on another queue → grandchild
    back on this one); the borrower takes an environment slot of its own."""
    row = conn.execute(
        "SELECT r.root_id, r.attempt_count, r.wait_index, s.queue, s.ckey FROM rl_runs r "
        "JOIN rl_slots s ON s.env = r.env AND s.run_id = r.id WHERE r.env=? AND r.id=? "
        "AND r.status='FROZEN' AND s.lent_to IS NULL",
        (env, lender),
    ).fetchone()
    if row is None:
        return False
    # first the runs it waits on (maybe not its own children: a cached idempotent run) ...
    waited = conn.execute(
        "SELECT r.id FROM rl_wait_children w JOIN rl_runs r ON r.env = w.env AND r.id = w.child_id "
        "WHERE w.env=? AND w.run_id=? AND w.attempt=? AND w.idx=? AND r.status='QUEUED' "
        "AND r.admitted=0 AND r.resume=0 AND r.queue=? AND r.ckey=? ORDER BY r.queue_ts LIMIT 1",
        (env, lender, row["attempt_count"], row["wait_index"], row["queue"], row["ckey"]),
    ).fetchone()
    child = waited[0] if waited else None
    if child is None:  # ... then any descendant (reached through runs on other queues)
        candidates = conn.execute(
            "SELECT id FROM rl_runs WHERE env=? AND root_id=? AND queue=? AND ckey=? AND "
            "status='QUEUED' AND admitted=0 AND resume=0 ORDER BY queue_ts LIMIT 1000",
            (env, row["root_id"] or lender, row["queue"], row["ckey"]),
        ).fetchall()
        child = next((c[0] for c in candidates if _is_descendant(conn, env, c[0], lender)), None)
    if child is None:
        return False
    conn.execute(
        "INSERT INTO rl_slots (env, run_id, queue, ckey, holds_queue, holds_env, borrowed_from) "
        "VALUES (?, ?, ?, ?, 0, 1, ?)",
        (env, child, row["queue"], row["ckey"], lender),
    )
    conn.execute("UPDATE rl_slots SET lent_to=? WHERE env=? AND run_id=?", (child, env, lender))
    leave_waiting(conn, env, row["queue"], row["ckey"])
    _counter(conn, env, "running", 1)
    _ready(conn, env, child)
    return True
