// What the official SDK (@trigger.dev/sdk 3.3.17) sends: every management call runlane serves
// is made once against a stub `fetch` that records the request and answers with a minimal
// valid response. Prints one JSON object: {name: {method, path, query: [[k, v], ...], headers,
// body}}. tests/test_http_shapes.py parses each request with runlane.frameworks.http.shapes.
"use strict";

const { configure, tasks, batch, runs, schedules } = require("@trigger.dev/sdk/v3");

const BASE = "http://runlane.test";
const NOW = "2025-03-01T12:00:00.000Z";
const RUN = {
  id: "run_1",
  status: "DELAYED",
  taskIdentifier: "my-task",
  isQueued: true,
  isExecuting: false,
  isCompleted: false,
  isSuccess: false,
  isFailed: false,
  isCancelled: false,
  isTest: false,
  createdAt: NOW,
  updatedAt: NOW,
  tags: [],
  costInCents: 0,
  baseCostInCents: 0,
  durationMs: 0,
  depth: 0,
  triggerFunction: "trigger",
  relatedRuns: {},
  attempts: [],
};
const SCHEDULE = {
  id: "sched_1",
  type: "IMPERATIVE",
  task: "my-schedule",
  active: true,
  generator: { type: "CRON", expression: "0 8 * * *", description: "At 08:00 AM" },
  timezone: "UTC",
  environments: [],
};

function answer(method, path) {
  if (path.endsWith("/trigger")) return { id: "run_1" };
  if (path === "/api/v1/tasks/batch") return { id: "batch_1", isCached: false, runs: [] };
  if (path === "/api/v1/runs") return { data: [], pagination: {} };
  if (path.startsWith("/api/v1/runs/") && path.endsWith("/reschedule")) return RUN;
  if (path === "/api/v1/timezones") return { timezones: ["UTC"] };
  if (path === "/api/v1/schedules" && method === "GET") {
    return { data: [], pagination: { currentPage: 1, totalPages: 0, count: 0 } };
  }
  if (path.startsWith("/api/v1/schedules")) return SCHEDULE;
  throw new Error(`no stub answer for ${method} ${path}`);
}

let current = null;
const captured = {};

globalThis.fetch = async (input, init = {}) => {
  const url = new URL(typeof input === "string" ? input : input.url);
  const method = (init.method || "GET").toUpperCase();
  captured[current] = {
    method,
    path: url.pathname,
    query: Array.from(url.searchParams.entries()),
    headers: Object.fromEntries(
      Object.entries(init.headers || {}).map(([k, v]) => [k.toLowerCase(), String(v)])
    ),
    body: init.body === undefined ? null : JSON.parse(init.body),
  };
  return new Response(JSON.stringify(answer(method, url.pathname)), {
    status: 200,
    headers: { "content-type": "application/json" },
  });
};

async function capture(name, call) {
  current = name;
  await call();
}

async function main() {
  configure({ baseURL: BASE, secretKey: "tr_dev_capture" });
  const all = {
    concurrencyKey: "user_42",
    delay: "1h52m18s",
    idempotencyKey: "order-7",
    idempotencyKeyTTL: "1h",
    maxAttempts: 3,
    maxDuration: 60,
    metadata: { step: 1 },
    queue: { name: "paid", concurrencyLimit: 10 },
    tags: ["user_42", "video"],
    ttl: "10m",
    machine: "large-1x",
    version: "20250301.1",
  };
  await capture("trigger_object", () =>
    tasks.trigger("my-task", { video: "v1", sizes: [1, 2.5], nested: { ok: true, none: null } }, all)
  );
  await capture("trigger_string", () => tasks.trigger("my-task", "hello"));
  await capture("trigger_number", () => tasks.trigger("my-task", 42));
  await capture("trigger_null", () => tasks.trigger("my-task", null));
  await capture("trigger_undefined", () => tasks.trigger("my-task", undefined));
  await capture("trigger_array", () => tasks.trigger("my-task", [1, "two", { three: 3 }]));
  await capture("trigger_undefined_key", () => tasks.trigger("my-task", { a: 1, gone: undefined }));
  await capture("trigger_date", () => tasks.trigger("my-task", { at: new Date(NOW) }));
  await capture("trigger_delay_date", () =>
    tasks.trigger("my-task", { a: 1 }, { delay: new Date(NOW), ttl: 600 })
  );
  await capture("batch_trigger", () =>
    tasks.batchTrigger("my-task", [
      { payload: { n: 1 } },
      { payload: "two", options: { delay: "1h", tags: "one-tag", idempotencyKey: "item-2" } },
    ])
  );
  await capture("batch_by_id", () =>
    batch.trigger([
      { id: "task-a", payload: { a: 1 } },
      { id: "task-b", payload: [1, 2], options: { queue: { name: "q" }, maxAttempts: 2 } },
    ])
  );
  await capture("batch_idempotent", () =>
    tasks.batchTrigger("my-task", [{ payload: 1 }], {
      idempotencyKey: "the-batch",
      idempotencyKeyTTL: "1h",
    })
  );
  await capture("list_runs_all", () =>
    runs.list({
      status: ["COMPLETED", "FAILED"],
      taskIdentifier: ["my-task", "other-task"],
      version: "20250301.1",
      tag: ["user_42"],
      schedule: "sched_1",
      isTest: false,
      from: new Date(NOW),
      to: new Date("2025-03-02T00:00:00.000Z"),
      batch: "batch_1",
      limit: 10,
      after: "run_cursor",
    })
  );
  await capture("list_runs_period", () => runs.list({ period: "1d", status: "QUEUED" }));
  await capture("list_runs_none", () => runs.list());
  await capture("reschedule_duration", () => runs.reschedule("run_1", { delay: "1h" }));
  await capture("reschedule_date", () => runs.reschedule("run_1", { delay: new Date(NOW) }));
  await capture("create_schedule", () =>
    schedules.create({
      task: "my-schedule",
      cron: "0 8 * * *",
      timezone: "America/New_York",
      externalId: "user_1",
      deduplicationKey: "user_1-reminder",
    })
  );
  await capture("create_schedule_min", () =>
    schedules.create({ task: "my-schedule", cron: "0 8 * * *", deduplicationKey: "d" })
  );
  await capture("update_schedule", () =>
    schedules.update("sched_1", { task: "my-schedule", cron: "0 9 * * *", externalId: "user_2" })
  );
  await capture("list_schedules", () => schedules.list({ page: 2, perPage: 5 }));
  await capture("list_schedules_none", () => schedules.list());
  await capture("timezones", () => schedules.timezones({ excludeUtc: true }));
  await capture("timezones_all", () => schedules.timezones());
  process.stdout.write(JSON.stringify(captured));
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
