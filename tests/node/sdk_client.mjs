// The official Trigger.dev SDK (@trigger.dev/sdk 3.3.17) as a client of a real `runlane serve`
// whose worker executes Python tasks. Only the SDK's public functions talk to the server
// (configure, tasks.trigger / batchTrigger, runs.*, idempotencyKeys.create, schedules.*,
// auth.withAuth / createPublicToken); every answer is checked as it comes.
//
// Environment: RUNLANE_URL (the server), RUNLANE_KEY (a secret key from `runlane keys create`,
// rl_<env>_...), RUNLANE_ENV_KEY (optional: the server's RUNLANE_SECRET_KEY). The server
// knows the tasks of tests/test_trigger_sdk.py: "sdk-double" ({n, word} → {doubled: 2n,
// word: WORD}), "sdk-slow" (sleeps a minute) and the scheduled task "sdk-tick" (declared with
// cron "0 5 * * *").
//
// Prints one JSON line, {"ok": true, ...what was seen}, and exits 0; on the first failed check
// prints {"ok": false, "step", "error"} and exits 1.

import { isDeepStrictEqual } from "node:util";

import {
  ApiError,
  AuthenticationError,
  NotFoundError,
  auth,
  configure,
  idempotencyKeys,
  runs,
  schedules,
  tasks,
} from "@trigger.dev/sdk/v3";

const BASE_URL = process.env.RUNLANE_URL;
const KEY = process.env.RUNLANE_KEY;
const ENV_KEY = process.env.RUNLANE_ENV_KEY; // the server's RUNLANE_SECRET_KEY, if it has one
const TASK = "sdk-double";
const SLOW = "sdk-slow";
const SCHEDULED = "sdk-tick";
const PAGE_RUNS = 25; // runs listed 10 a page: 3 pages
const PAGE_SIZE = 10;
const NONCE = `${process.pid}-${Date.now()}`;
const TAG = `sdk-${NONCE}`; // on every run this script triggers

let step = "setup"; // what the script is checking, named in its failure

// Every HTTP exchange the SDK makes, observed (not altered) around the global fetch it uses:
// an answer other than 2xx outside a call expected to fail (see `failure`) fails the script,
// so an error the SDK retried past silently is seen too.
const exchanges = [];
let expectingError = false;
const sdkFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const response = await sdkFetch(input, init);
  const url = new URL(input instanceof Request ? input.url : String(input));
  exchanges.push({
    method: (init?.method ?? "GET").toUpperCase(),
    path: url.pathname,
    status: response.status,
    expected: expectingError,
    step,
  });
  return response;
};

const results = { keyPrefix: KEY ? KEY.split("_").slice(0, 2).join("_") + "_" : null };

class CheckFailed extends Error {}

function check(condition, message, seen) {
  if (!condition) {
    let shown = seen === undefined ? "" : JSON.stringify(seen) ?? String(seen);
    if (shown.length > 600) shown = `${shown.slice(0, 600)}...`;
    const detail = seen === undefined ? "" : `; seen: ${shown}`;
    throw new CheckFailed(`${message}${detail}`);
  }
}

function same(actual, expected, message) {
  check(isDeepStrictEqual(actual, expected), `${message}: expected ${JSON.stringify(expected)}`, actual);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// runs.retrieve until the run's status is one of `statuses`
async function waitStatus(runId, statuses, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let run;
  for (;;) {
    run = await runs.retrieve(runId);
    if (statuses.includes(run.status)) return run;
    if (Date.now() > deadline) {
      throw new CheckFailed(`run ${runId} is ${run.status} after ${timeoutMs} ms, not ${statuses.join("/")}`);
    }
    await sleep(100);
  }
}

// collect every item of a list, following its pages with the SDK's auto-pagination
async function all(listPromise) {
  const items = [];
  for await (const item of listPromise) items.push(item);
  return items;
}

// the error an SDK call ends with (a check fails if it succeeds)
async function failure(call, what) {
  const before = exchanges.length;
  expectingError = true;
  try {
    const value = await call();
    throw new CheckFailed(`${what} succeeded: ${JSON.stringify(value)}`);
  } catch (error) {
    if (error instanceof CheckFailed) throw error;
    const errors = exchanges.slice(before).filter((e) => e.status >= 300);
    check(errors.length === 1, `${what}: one error answer, not retried`, errors);
    return error;
  } finally {
    expectingError = false;
  }
}

// ---------------------------------------------------------------------- the steps
async function triggerAndComplete() {
  step = "tasks.trigger → COMPLETED";
  const handle = await tasks.trigger(
    TASK,
    { n: 21, word: "hi" },
    { tags: [TAG, "first"], metadata: { from: "node" }, maxAttempts: 2 }
  );
  check(typeof handle.id === "string" && handle.id.startsWith("run_"), "a run id", handle);
  check(typeof handle.publicAccessToken === "string", "a public access token", handle);
  const run = await waitStatus(handle.id, ["COMPLETED", "FAILED", "CRASHED", "SYSTEM_FAILURE"]);
  same(run.status, "COMPLETED", "the run's status");
  same(run.output, { doubled: 42, word: "HI" }, "the Python task's output");
  same(run.payload, { n: 21, word: "hi" }, "the run's payload");
  same(run.taskIdentifier, TASK, "taskIdentifier");
  same([...run.tags].sort(), [TAG, "first"].sort(), "tags");
  same(run.metadata, { from: "node" }, "metadata");
  check(run.isCompleted && run.isSuccess && !run.isFailed, "isCompleted and isSuccess", run);
  check(run.createdAt instanceof Date && run.finishedAt instanceof Date, "dates parsed", run);
  check(run.attempts.length === 1 && run.attempts[0].status === "COMPLETED", "one attempt", run.attempts);

  step = "the handle's public access token (auth.withAuth)";
  // withAuth merges into the configuration, and the SDK reads `secretKey` before `accessToken`:
  // with configure({secretKey}), withAuth({accessToken}) would still send the secret key
  const seen = await auth.withAuth({ secretKey: handle.publicAccessToken }, () => runs.retrieve(handle.id));
  same(seen.status, "COMPLETED", "the run read with its token");
  check(seen.payload === undefined && seen.output === undefined, "a token sees no payload or output", seen);
  results.trigger = { id: run.id, output: run.output, attempts: run.attempts.length };
  return run;
}

async function idempotency() {
  step = "idempotency keys";
  const key = await idempotencyKeys.create(`sdk-idem-${NONCE}`);
  check(typeof key === "string" && key.length === 64, "idempotencyKeys.create makes a hashed key", key);
  const first = await tasks.trigger(
    TASK,
    { n: 1 },
    { idempotencyKey: key, idempotencyKeyTTL: "1h", tags: [TAG] }
  );
  const again = await tasks.trigger(TASK, { n: 2 }, { idempotencyKey: key, tags: [TAG] });
  same(again.id, first.id, "a repeated idempotency key returns the first run");
  // a plain string key is hashed by the SDK as idempotencyKeys.create hashes it (outside a task)
  const plain = await tasks.trigger(TASK, { n: 3 }, { idempotencyKey: `sdk-idem-${NONCE}`, tags: [TAG] });
  same(plain.id, first.id, "the same key given as a string");
  const batch = await tasks.batchTrigger(TASK, [
    { payload: { n: 4 }, options: { idempotencyKey: key, tags: [TAG] } },
    { payload: { n: 5 }, options: { tags: [TAG] } },
  ]);
  same(batch.runs[0].id, first.id, "a batch item with the key returns the first run");
  check(batch.runs[0].isCached === true && batch.runs[1].isCached === false, "isCached per item", batch.runs);
  const run = await waitStatus(first.id, ["COMPLETED"]);
  same(run.output, { doubled: 2, word: "" }, "the cached run ran once, with the first payload");
  same(run.idempotencyKey, key, "the run's idempotencyKey");
  await waitStatus(batch.runs[1].id, ["COMPLETED"]);
  results.idempotency = { id: first.id, cachedIds: [again.id, plain.id, batch.runs[0].id] };
}

async function delayAndReschedule() {
  step = "delay → DELAYED → runs.reschedule";
  const before = Date.now();
  const handle = await tasks.trigger(TASK, { n: 6 }, { delay: "1h", tags: [TAG, "delayed"] });
  const delayed = await runs.retrieve(handle.id);
  same(delayed.status, "DELAYED", "a delayed run's status");
  const due = delayed.delayedUntil?.getTime() ?? 0;
  const aboutAnHour = Math.abs(due - (before + 3_600_000)) < 60_000;
  check(aboutAnHour, "delayedUntil about an hour ahead", delayed.delayedUntil);

  const moved = await runs.reschedule(handle.id, { delay: "2h" });
  same(moved.id, handle.id, "reschedule answers the run");
  same(moved.status, "DELAYED", "a rescheduled run stays DELAYED");
  const movedDue = moved.delayedUntil?.getTime() ?? 0;
  check(movedDue - due > 3_000_000, "delayedUntil moved about an hour later", moved.delayedUntil);
  const reread = await runs.retrieve(handle.id);
  same(reread.delayedUntil?.getTime(), movedDue, "the new delayedUntil is kept");

  step = "runs.reschedule to a Date two seconds away → COMPLETED";
  const soon = await tasks.trigger(TASK, { n: 7 }, { delay: "1h", tags: [TAG] });
  const when = new Date(Date.now() + 2000);
  const soonMoved = await runs.reschedule(soon.id, { delay: when });
  same(soonMoved.delayedUntil?.getTime(), when.getTime(), "delayedUntil is the Date given");
  const ran = await waitStatus(soon.id, ["COMPLETED"]);
  same(ran.output, { doubled: 14, word: "" }, "the rescheduled run's output");

  step = "runs.reschedule of a run that is not delayed";
  const refused = await failure(
    () => runs.reschedule(ran.id, { delay: "1h" }),
    "rescheduling a COMPLETED run"
  );
  check(refused instanceof ApiError && refused.status === 422, "a 422 error", String(refused));
  results.delay = { id: handle.id, delayedUntil: moved.delayedUntil.toISOString(), rescheduledRan: soon.id };
  return handle.id;
}

async function cancel(delayedId) {
  step = "runs.cancel (a DELAYED run)";
  const canceled = await runs.cancel(delayedId);
  same(canceled.id, delayedId, "cancel answers the run id");
  const run = await runs.retrieve(delayedId);
  same(run.status, "CANCELED", "a canceled run's status");
  check(run.isCancelled && run.isCompleted && !run.isSuccess, "isCancelled", run);

  step = "runs.cancel (an EXECUTING run)";
  const slow = await tasks.trigger(SLOW, {}, { tags: [TAG, "slow"] });
  await waitStatus(slow.id, ["EXECUTING"]);
  await runs.cancel(slow.id);
  const stopped = await waitStatus(slow.id, ["CANCELED"], 5_000);
  check(stopped.output === undefined, "a canceled run has no output", stopped);
  results.cancel = { delayed: delayedId, executing: slow.id };
}

async function replay(original) {
  step = "runs.replay";
  const replayed = await runs.replay(original.id);
  check(replayed.id !== original.id, "replay makes a new run", replayed);
  const run = await waitStatus(replayed.id, ["COMPLETED"]);
  same(run.taskIdentifier, original.taskIdentifier, "the replay's task");
  same(run.payload, original.payload, "the replay's payload");
  same(run.output, original.output, "the replay's output");
  results.replay = { from: original.id, id: run.id };
}

async function listing() {
  step = "tasks.batchTrigger (runs for the pages)";
  const pageTag = `pages-${NONCE}`;
  const batchStart = new Date(Date.now() - 1000);
  const items = Array.from({ length: PAGE_RUNS }, (_, i) => ({
    payload: { n: i },
    options: { tags: [TAG, pageTag] },
  }));
  const batch = await tasks.batchTrigger(TASK, items);
  check(typeof batch.batchId === "string" && batch.runs.length === PAGE_RUNS, "a batch of runs", batch);
  const ids = new Set(batch.runs.map((r) => r.id));
  check(ids.size === PAGE_RUNS, "distinct run ids", batch.runs);

  step = "runs.list filtered by tag and status, until the batch completed";
  const deadline = Date.now() + 60_000;
  let completed = [];
  while (completed.length < PAGE_RUNS) {
    check(Date.now() < deadline, `${PAGE_RUNS} runs COMPLETED within a minute`, completed.length);
    await sleep(200);
    completed = await all(runs.list({ tag: pageTag, status: ["COMPLETED"], limit: PAGE_SIZE }));
  }

  step = "runs.list pages (auto-pagination)";
  const listed = await all(runs.list({ tag: pageTag, limit: PAGE_SIZE }));
  same(listed.length, PAGE_RUNS, "runs listed across pages");
  same(new Set(listed.map((r) => r.id)), ids, "the batch's runs, each once");
  const times = listed.map((r) => r.createdAt.getTime());
  check(times.every((t, i) => i === 0 || times[i - 1] >= t), "newest first", times);
  check(listed.every((r) => r.status === "COMPLETED" && r.env && r.env.name), "list items", listed[0]);
  const first = await runs.list({ tag: pageTag, limit: PAGE_SIZE });
  const sizes = [];
  for await (const page of first.iterPages()) sizes.push(page.data.length);
  same(sizes, [10, 10, 5], "page sizes");

  step = "runs.list filters";
  const byTask = await all(runs.list({ tag: pageTag, taskIdentifier: TASK, limit: 100 }));
  same(byTask.length, PAGE_RUNS, "filtered by task");
  const otherTask = await all(runs.list({ tag: pageTag, taskIdentifier: SLOW, limit: 100 }));
  same(otherTask.length, 0, "another task's runs");
  const canceled = await all(runs.list({ tag: TAG, status: "CANCELED" }));
  same(canceled.length, 2, "this script's CANCELED runs (the delayed one and the slow one)");
  check(canceled.every((r) => r.isCancelled), "CANCELED items", canceled);
  const slowOnes = await all(runs.list({ tag: TAG, taskIdentifier: [SLOW] }));
  same(slowOnes.length, 1, "the slow task's run");
  const mine = await all(runs.list({ tag: TAG, limit: PAGE_SIZE }));
  const statuses = {};
  for (const r of mine) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const inTime = await all(runs.list({ tag: pageTag, from: batchStart, to: new Date(Date.now() + 60_000) }));
  same(inTime.length, PAGE_RUNS, "filtered by createdAt from/to");
  const later = await all(runs.list({ tag: pageTag, from: new Date(Date.now() + 60_000) }));
  same(later.length, 0, "created after a minute from now");
  const recent = await all(runs.list({ tag: pageTag, period: "1h" }));
  same(recent.length, PAGE_RUNS, "filtered by period");
  const noRuns = await all(runs.list({ tag: `nothing-${NONCE}` }));
  same(noRuns.length, 0, "an unused tag");
  results.list = { pages: sizes, listed: listed.length, mine: mine.length, statuses };
}

async function scheduling() {
  step = "schedules.create with a deduplicationKey";
  const dedup = `sdk-dedup-${NONCE}`;
  const created = await schedules.create({
    task: SCHEDULED,
    cron: "0 8 * * *",
    timezone: "Europe/Paris",
    externalId: "user-1",
    deduplicationKey: dedup,
  });
  check(created.id.startsWith("sched_"), "a schedule id", created);
  same(created.type, "IMPERATIVE", "type");
  same(created.active, true, "a new schedule is active");
  same(created.deduplicationKey, dedup, "deduplicationKey");
  same(created.timezone, "Europe/Paris", "timezone");
  check(created.nextRun instanceof Date && created.nextRun.getTime() > Date.now(), "nextRun", created);
  const again = await schedules.create({ task: SCHEDULED, cron: "30 9 * * *", deduplicationKey: dedup });
  same(again.id, created.id, "the same deduplicationKey returns the same schedule");
  same(again.generator.expression, "30 9 * * *", "and updates it");

  step = "schedules.retrieve / list";
  const read = await schedules.retrieve(created.id);
  same(read.id, created.id, "retrieve");
  same(read.generator.expression, "30 9 * * *", "the updated cron");
  const other = await schedules.create({
    task: SCHEDULED,
    cron: "0 0 1 * *",
    deduplicationKey: `${dedup}-2`,
  });
  const listed = await all(schedules.list({ perPage: 1 }));
  const listedIds = listed.map((s) => s.id);
  check(listedIds.includes(created.id) && listedIds.includes(other.id), "both schedules listed", listedIds);
  same(new Set(listedIds).size, listedIds.length, "each schedule once across pages");
  const declared = listed.find((s) => s.type === "DECLARATIVE" && s.task === SCHEDULED);
  check(declared && declared.generator.expression === "0 5 * * *", "the task's declared schedule", listed);
  const pages = [];
  for await (const page of (await schedules.list({ perPage: 2 })).iterPages()) pages.push(page.data.length);
  same(pages.reduce((a, b) => a + b, 0), listed.length, "offset pages add up");

  step = "schedules.update / deactivate / activate";
  const updated = await schedules.update(created.id, {
    task: SCHEDULED,
    cron: "0 6 * * 1",
    timezone: "UTC",
    externalId: "user-2",
  });
  same(
    [updated.generator.expression, updated.timezone, updated.externalId],
    ["0 6 * * 1", "UTC", "user-2"],
    "updated"
  );
  const off = await schedules.deactivate(created.id);
  check(off.active === false && off.nextRun == null, "deactivated: inactive, no next run", off);
  const on = await schedules.activate(created.id);
  check(on.active === true && on.nextRun instanceof Date, "activated", on);

  step = "schedules.del";
  const deleted = await schedules.del(created.id);
  same(deleted.id, created.id, "del answers the id");
  const gone = await failure(() => schedules.retrieve(created.id), "retrieving a deleted schedule");
  check(gone instanceof NotFoundError && gone.status === 404, "a 404 error", String(gone));
  await schedules.del(other.id);
  const declaredDel = await failure(() => schedules.del(declared.id), "deleting a DECLARATIVE schedule");
  check(declaredDel instanceof ApiError && declaredDel.status === 422, "a 422 error", String(declaredDel));
  const unknownTask = await failure(
    () => schedules.create({ task: TASK, cron: "0 8 * * *", deduplicationKey: `${dedup}-3` }),
    "a schedule of a task that is not a scheduled task"
  );
  check(unknownTask instanceof ApiError && unknownTask.status === 422, "a 422 error", String(unknownTask));

  step = "schedules.timezones";
  const zones = await schedules.timezones();
  same(zones.timezones[0], "UTC", "UTC first");
  const iana = zones.timezones.includes("Europe/Paris") && zones.timezones.length > 300;
  check(iana, "IANA zones", zones.timezones.length);
  const noUtc = await schedules.timezones({ excludeUtc: true });
  check(!noUtc.timezones.includes("UTC"), "excludeUtc", noUtc.timezones.slice(0, 3));
  results.schedules = { id: created.id, listed: listed.length, pages, timezones: zones.timezones.length };
}

async function wrongKeys() {
  step = "a wrong secret key";
  // auth.withAuth, not configure(): the SDK's configure() registers its configuration once
  // per process and silently ignores a second call
  const refusals = {};
  const wrongKeys = {
    rl: `rl_dev_${"A".repeat(40)}`,
    tr: `tr_dev_${"B".repeat(20)}`, // a Trigger.dev key: not runlane's
  };
  for (const [name, key] of Object.entries(wrongKeys)) {
    const withKey = (call) => auth.withAuth({ secretKey: key }, call);
    const listErr = await failure(
      () => withKey(() => runs.list({ tag: TAG })),
      `runs.list with a wrong ${name}_ key`
    );
    const is401 = listErr instanceof AuthenticationError && listErr.status === 401;
    check(is401, "an AuthenticationError (401)", String(listErr));
    const triggerErr = await failure(
      () => withKey(() => tasks.trigger(TASK, { n: 0 }, { tags: [TAG, "refused"] })),
      `a trigger with a wrong ${name}_ key`
    );
    check(triggerErr instanceof AuthenticationError, "a trigger with a wrong key: 401", String(triggerErr));
    refusals[name] = { status: listErr.status, message: listErr.message };
  }
  const refusedRuns = await all(runs.list({ tag: "refused" }));
  same(refusedRuns.length, 0, "nothing triggered with a wrong key");
  const stillMine = await runs.retrieve(results.trigger.id);
  same(stillMine.status, "COMPLETED", "the right key works after withAuth");
  results.wrongKey = refusals;
}

// Tokens the SDK signs itself (no kid): a batch handle's publicAccessToken and
// auth.createPublicToken. runlane verifies them only against the key it holds whole, the
// server's RUNLANE_SECRET_KEY; a key made with `runlane keys create` is stored as a digest,
// which cannot check them: with such a key they are refused (401), never taken unchecked.
async function sdkSignedTokens() {
  step = "SDK-signed tokens, SDK configured with a key from `runlane keys create`";
  const batch = await tasks.batchTrigger(TASK, [{ payload: { n: 8 }, options: { tags: [TAG] } }]);
  const runId = batch.runs[0].id;
  const refused = await failure(
    () => auth.withAuth({ secretKey: batch.publicAccessToken }, () => runs.retrieve(runId)),
    "reading a run with a token the SDK signed with a store key"
  );
  check(refused instanceof AuthenticationError, "an AuthenticationError (401)", String(refused));
  results.sdkSignedTokens = { storeKey: refused.message };
  await waitStatus(runId, ["COMPLETED"]);
  if (!ENV_KEY) return;

  step = "SDK-signed tokens, SDK configured with the server's RUNLANE_SECRET_KEY";
  await auth.withAuth({ secretKey: ENV_KEY }, async () => {
    const signedTag = `signed-${NONCE}`;
    const items = [{ payload: { n: 9 }, options: { tags: [TAG, signedTag] } }];
    const signed = await tasks.batchTrigger(TASK, items);
    const id = signed.runs[0].id;
    await waitStatus(id, ["COMPLETED"]);
    const token = await auth.createPublicToken({ scopes: { read: { tags: [signedTag] } } });
    for (const [name, jwt] of [["batch handle", signed.publicAccessToken], ["createPublicToken", token]]) {
      const seen = await auth.withAuth({ secretKey: jwt }, () => runs.retrieve(id));
      same(seen.status, "COMPLETED", `the run read with the ${name}'s token`);
      check(seen.payload === undefined && seen.output === undefined, "no payload or output", seen);
    }
    const other = await failure(
      () => auth.withAuth({ secretKey: token }, () => runs.retrieve(results.trigger.id)),
      "reading a run the token's scopes do not name"
    );
    check(other instanceof NotFoundError, "a 404", String(other));
  });
  results.sdkSignedTokens.envKey = "accepted";
}

async function main() {
  check(BASE_URL && KEY, "RUNLANE_URL and RUNLANE_KEY must be set");
  configure({ baseURL: BASE_URL, secretKey: KEY });
  const started = Date.now();
  const first = await triggerAndComplete();
  await idempotency();
  const delayedId = await delayAndReschedule();
  await cancel(delayedId);
  await replay(first);
  await listing();
  await scheduling();
  await sdkSignedTokens();
  await wrongKeys();
  step = "every HTTP answer";
  const unexpected = exchanges.filter((e) => e.status >= 300 && !e.expected);
  check(unexpected.length === 0, "no error answer outside the calls expected to fail", unexpected);
  results.requests = exchanges.length;
  results.refusedAsExpected = exchanges
    .filter((e) => e.expected)
    .map((e) => `${e.status} ${e.method} ${e.path}`);
  results.ms = Date.now() - started;
  process.stdout.write(JSON.stringify({ ok: true, ...results }) + "\n");
}

main().catch((error) => {
  const message =
    error instanceof CheckFailed
      ? error.message
      : `${error?.name ?? "Error"}: ${error?.message ?? error}`;
  const out = { ok: false, step, error: message };
  if (error?.status !== undefined) out.status = error.status;
  if (error?.rawBody !== undefined) out.rawBody = error.rawBody;
  process.stdout.write(JSON.stringify(out) + "\n");
  process.stderr.write(`sdk_client.mjs failed at "${step}": ${message}\n`);
  if (!(error instanceof CheckFailed) && error?.stack) process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
