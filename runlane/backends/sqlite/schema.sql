-- runlane SQLite store. Every table is keyed by environment first, so environments never mix.
CREATE TABLE IF NOT EXISTS rl_runs (
    env TEXT NOT NULL,
    id TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    output TEXT,
    error TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    seed_metadata TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    idempotency_key TEXT,
    ttl REAL,
    delay_until REAL,
    ttl_expires_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    queued_at REAL,
    started_at REAL,
    finished_at REAL,
    expired_at REAL,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    batch_id TEXT,
    parent_id TEXT,
    root_id TEXT,
    depth INTEGER NOT NULL DEFAULT 0,
    schedule_id TEXT,
    queue TEXT NOT NULL,
    concurrency_key TEXT,
    max_attempts INTEGER,
    max_duration INTEGER,
    machine TEXT,
    version TEXT,
    number INTEGER NOT NULL,
    is_test INTEGER NOT NULL DEFAULT 0,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    retry_at REAL,
    trace_context TEXT,
    resume INTEGER NOT NULL DEFAULT 0,      -- the next start continues the current attempt
    wait_index INTEGER,                     -- FROZEN on this waitpoint of the current attempt
    segment_started_at REAL,                -- when the current stretch of execution began
    ckey TEXT NOT NULL DEFAULT '',          -- concurrency key ('' = none): the sub-queue
    queue_given INTEGER NOT NULL DEFAULT 0, -- the trigger chose the queue (keep it on deploy)
    admitted INTEGER NOT NULL DEFAULT 0,    -- QUEUED and holding its slots (sent to the broker)
    queue_ts REAL,                          -- place in line (kept across retries and resumes)
    lease_until REAL,                       -- EXECUTING: the worker must renew before this
    attempts_allowed INTEGER,               -- effective max attempts of the current run
    PRIMARY KEY (env, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rl_runs_status ON rl_runs (env, status, id);
CREATE INDEX IF NOT EXISTS rl_runs_task ON rl_runs (env, task, id);
CREATE INDEX IF NOT EXISTS rl_runs_batch ON rl_runs (env, batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS rl_runs_parent ON rl_runs (env, parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS rl_runs_schedule ON rl_runs (env, schedule_id) WHERE schedule_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS rl_runs_delayed ON rl_runs (env, delay_until) WHERE status = 'DELAYED';
CREATE INDEX IF NOT EXISTS rl_runs_ttl ON rl_runs (env, ttl_expires_at)
    WHERE status IN ('QUEUED', 'WAITING_FOR_DEPLOY') AND ttl_expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS rl_runs_retry ON rl_runs (env, retry_at) WHERE status = 'REATTEMPTING';
CREATE INDEX IF NOT EXISTS rl_runs_waiting ON rl_runs (env, task) WHERE status = 'WAITING_FOR_DEPLOY';

CREATE TABLE IF NOT EXISTS rl_run_tags (
    env TEXT NOT NULL, tag TEXT NOT NULL, run_id TEXT NOT NULL,
    PRIMARY KEY (env, tag, run_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rl_attempts (
    env TEXT NOT NULL, run_id TEXT NOT NULL, number INTEGER NOT NULL, id TEXT NOT NULL,
    status TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL, error TEXT,
    worker_id TEXT, machine TEXT, duration_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (env, run_id, number)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rl_idempotency (
    env TEXT NOT NULL, task TEXT NOT NULL, key TEXT NOT NULL,
    run_id TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (env, task, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rl_batches (
    env TEXT NOT NULL, id TEXT NOT NULL, run_ids TEXT NOT NULL, created_at REAL NOT NULL,
    parent_id TEXT,
    PRIMARY KEY (env, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rl_tasks (
    env TEXT NOT NULL, id TEXT NOT NULL, queue TEXT NOT NULL, registered_at REAL NOT NULL,
    PRIMARY KEY (env, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rl_counters (
    env TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (env, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rl_leases (
    env TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (env, name)
) WITHOUT ROWID;

-- The local broker's queue (runlane.backends.local): deliveries claimed with a visibility lease.
CREATE TABLE IF NOT EXISTS rl_dispatch (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    env TEXT NOT NULL, run_id TEXT NOT NULL, task TEXT NOT NULL, queue TEXT NOT NULL,
    machine TEXT, claimed_by TEXT, claimed_until REAL
);
CREATE INDEX IF NOT EXISTS rl_dispatch_task ON rl_dispatch (env, task, seq);
CREATE UNIQUE INDEX IF NOT EXISTS rl_dispatch_run ON rl_dispatch (env, run_id);

CREATE TABLE IF NOT EXISTS rl_logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    env TEXT NOT NULL, run_id TEXT NOT NULL, attempt INTEGER NOT NULL, time REAL NOT NULL,
    level TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL, attributes TEXT NOT NULL,
    duration_ms REAL
);
CREATE INDEX IF NOT EXISTS rl_logs_run ON rl_logs (env, run_id, seq);

-- Durable waits. A waitpoint belongs to (run, attempt, index): the index-th wait of that attempt,
-- which is also its position in the attempt's replay log.
CREATE TABLE IF NOT EXISTS rl_waitpoints (
    env TEXT NOT NULL, run_id TEXT NOT NULL, attempt INTEGER NOT NULL, idx INTEGER NOT NULL,
    kind TEXT NOT NULL,              -- run | batch | time
    fingerprint TEXT NOT NULL,       -- what was waited on, to detect a replay taking another path
    run_ids TEXT NOT NULL DEFAULT '[]',
    batch_id TEXT,
    pending INTEGER NOT NULL DEFAULT 0,
    resume_at REAL,
    resolved_at REAL,
    created_at REAL NOT NULL,
    PRIMARY KEY (env, run_id, attempt, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rl_waitpoints_time ON rl_waitpoints (env, resume_at)
    WHERE kind = 'time' AND resolved_at IS NULL;

CREATE TABLE IF NOT EXISTS rl_wait_children (
    env TEXT NOT NULL, child_id TEXT NOT NULL, run_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (env, child_id, run_id, attempt, idx)
) WITHOUT ROWID;

-- Runs made QUEUED by the store itself (a resumed wait) that still have to be sent.
CREATE TABLE IF NOT EXISTS rl_ready (
    env TEXT NOT NULL, run_id TEXT NOT NULL,
    PRIMARY KEY (env, run_id)
) WITHOUT ROWID;

-- Admission (runlane.backends.sqlite.admission). A run reaches the broker only once it holds its
-- slots: one in its sub-queue (queue + concurrency key), counted toward the queue's total, and
-- one in the environment. Counters are kept in the same transactions that move runs.
CREATE TABLE IF NOT EXISTS rl_queues (
    env TEXT NOT NULL, name TEXT NOT NULL,
    concurrency_limit INTEGER,          -- per key (and for runs without a key); NULL = unbounded
    total_limit INTEGER,                -- all keys together; NULL = unbounded
    running INTEGER NOT NULL DEFAULT 0, -- slots held in this queue (borrowed ones not counted)
    paused INTEGER NOT NULL DEFAULT 0, paused_until REAL,
    PRIMARY KEY (env, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rl_subqueues (
    env TEXT NOT NULL, queue TEXT NOT NULL, ckey TEXT NOT NULL,
    waiting INTEGER NOT NULL DEFAULT 0, running INTEGER NOT NULL DEFAULT 0,
    served_seq INTEGER NOT NULL DEFAULT 0,  -- round robin: least recently served first
    paused INTEGER NOT NULL DEFAULT 0, paused_until REAL,
    PRIMARY KEY (env, queue, ckey)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rl_subqueues_waiting ON rl_subqueues (env, served_seq) WHERE waiting > 0;

CREATE TABLE IF NOT EXISTS rl_slots (
    env TEXT NOT NULL, run_id TEXT NOT NULL, queue TEXT NOT NULL, ckey TEXT NOT NULL,
    holds_queue INTEGER NOT NULL,       -- 0 when the slot is borrowed from a FROZEN ancestor
    holds_env INTEGER NOT NULL,
    borrowed_from TEXT, lent_to TEXT,
    PRIMARY KEY (env, run_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS rl_runs_admission ON rl_runs (env, queue, ckey, queue_ts)
    WHERE status = 'QUEUED' AND admitted = 0;
CREATE INDEX IF NOT EXISTS rl_runs_resumed ON rl_runs (env, queue_ts)
    WHERE status = 'QUEUED' AND resume = 1 AND admitted = 0;
CREATE INDEX IF NOT EXISTS rl_runs_root ON rl_runs (env, root_id) WHERE root_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS rl_runs_lease ON rl_runs (env, lease_until) WHERE status = 'EXECUTING';

CREATE TABLE IF NOT EXISTS rl_schedules (
    env TEXT NOT NULL, id TEXT NOT NULL, task TEXT NOT NULL, cron TEXT NOT NULL,
    timezone TEXT NOT NULL, type TEXT NOT NULL, active INTEGER NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    next_at REAL, last_at REAL, external_id TEXT, deduplication_key TEXT, generation TEXT,
    PRIMARY KEY (env, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS rl_schedules_dedup ON rl_schedules (env, deduplication_key)
    WHERE deduplication_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS rl_schedules_due ON rl_schedules (env, next_at) WHERE active = 1;
CREATE INDEX IF NOT EXISTS rl_schedules_order ON rl_schedules (env, created_at, id);
CREATE INDEX IF NOT EXISTS rl_schedules_task ON rl_schedules (env, task, created_at, id);

CREATE TABLE IF NOT EXISTS rl_keys (
    env TEXT NOT NULL, id TEXT NOT NULL, digest TEXT NOT NULL, name TEXT NOT NULL,
    created_at REAL NOT NULL, hint TEXT NOT NULL, revoked_at REAL, rate_limit INTEGER,
    PRIMARY KEY (env, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rl_key_hits (
    env TEXT NOT NULL, key_id TEXT NOT NULL, window_start REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (env, key_id)
) WITHOUT ROWID;

-- The change feed (runlane.core.realtime): one row per change of a run that a subscriber sees
-- (created; status, attempt, tags, metadata, output, error or delay changed) and per stream
-- chunk, numbered by seq across environments. Written by the triggers below and by
-- append_stream; the oldest rows are trimmed as new ones come (rl_counters' feed_trimmed, under
-- environment '*', is the last seq trimmed: a reader behind it has missed changes).
CREATE TABLE IF NOT EXISTS rl_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    env TEXT NOT NULL, run_id TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'r'
);
CREATE TRIGGER IF NOT EXISTS rl_runs_created AFTER INSERT ON rl_runs
BEGIN
    INSERT INTO rl_changes (env, run_id) VALUES (NEW.env, NEW.id);
END;
CREATE TRIGGER IF NOT EXISTS rl_runs_changed
AFTER UPDATE OF status, attempt_count, tags, metadata, output, error, delay_until ON rl_runs
WHEN NEW.status IS NOT OLD.status OR NEW.attempt_count IS NOT OLD.attempt_count
    OR NEW.tags IS NOT OLD.tags OR NEW.metadata IS NOT OLD.metadata
    OR NEW.output IS NOT OLD.output OR NEW.error IS NOT OLD.error
    OR NEW.delay_until IS NOT OLD.delay_until
BEGIN
    INSERT INTO rl_changes (env, run_id) VALUES (NEW.env, NEW.id);
END;
CREATE TRIGGER IF NOT EXISTS rl_changes_trim AFTER INSERT ON rl_changes
WHEN NEW.seq % 1024 = 0
BEGIN
    DELETE FROM rl_changes WHERE seq <= NEW.seq - 20000;
    INSERT OR REPLACE INTO rl_counters (env, name, value)
        VALUES ('*', 'feed_trimmed', MAX(NEW.seq - 20000, 0));
END;

-- Stream chunks (metadata.stream): kept with their run, numbered by their change's seq.
CREATE TABLE IF NOT EXISTS rl_streams (
    env TEXT NOT NULL, run_id TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (env, run_id, seq)
) WITHOUT ROWID;
