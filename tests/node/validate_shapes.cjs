// Validates JSON documents with the zod schemas the official SDK (@trigger.dev/core 3.3.17)
// checks responses with. Reads from stdin either one JSON object {schemaName: [documents]} or
// JSON lines {"schema": name, "doc": document}; prints one JSON object:
//   {"checked": n, "failures": [{schema, index, issues}], "unknown": [{schema, index, path}]}
// "unknown" lists object keys the schema does not know (zod drops them silently: a misspelt
// optional field would pass unnoticed otherwise). Exit status 1 when something failed.
//
// Schema names: any zod schema exported by @trigger.dev/core/v3 (RetrieveRunResponse,
// ScheduleObject, ...), and the envelopes the API client builds itself:
//   ListRunsPage      zodfetchCursorPage(ListRunResponseItem)  (GET /api/v1/runs)
//   ListSchedulesPage zodfetchOffsetLimitPage(ScheduleObject)  (GET /api/v1/schedules)
//   AddTagsResponse   z.object({message: z.string()})          (POST /api/v1/runs/{id}/tags)
//   JWTClaims         z.record(z.any())                        (POST /api/v1/auth/jwt/claims)
"use strict";

const path = require("node:path");
const v3 = require("@trigger.dev/core/v3");
// the zod instance @trigger.dev/core itself uses
const corePackage = require.resolve("@trigger.dev/core/package.json");
const { z } = require(require.resolve("zod", { paths: [path.dirname(corePackage)] }));

const extra = {
  ListRunsPage: z.object({
    data: z.array(v3.ListRunResponseItem),
    pagination: z.object({ next: z.string().optional(), previous: z.string().optional() }),
  }),
  ListSchedulesPage: z.object({
    data: z.array(v3.ScheduleObject),
    pagination: z.object({
      currentPage: z.coerce.number(),
      totalPages: z.coerce.number(),
      count: z.coerce.number(),
    }),
  }),
  AddTagsResponse: z.object({ message: z.string() }),
  JWTClaims: z.record(z.any()),
};

function schemaFor(name) {
  const schema = extra[name] || v3[name];
  if (!schema || typeof schema.safeParse !== "function") {
    throw new Error(`no zod schema named ${JSON.stringify(name)} in @trigger.dev/core/v3`);
  }
  return schema;
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// keys of `input` that the parsed `output` lost: those the schema stripped as unknown
function unknownKeys(input, output, where, found) {
  if (Array.isArray(input) && Array.isArray(output)) {
    input.forEach((item, i) => unknownKeys(item, output[i], `${where}[${i}]`, found));
  } else if (isPlainObject(input) && isPlainObject(output) && !(output instanceof Date)) {
    for (const key of Object.keys(input)) {
      if (!(key in output)) {
        found.push(`${where}.${key}`);
      } else {
        unknownKeys(input[key], output[key], `${where}.${key}`, found);
      }
    }
  }
  return found;
}

function isLine(value) {
  return isPlainObject(value) && "schema" in value && "doc" in value;
}

// {schemaName: [documents]}, or JSON lines {"schema": name, "doc": document}
function readInput(text) {
  let whole;
  try {
    whole = JSON.parse(text);
  } catch {
    whole = undefined;
  }
  if (isPlainObject(whole) && !isLine(whole)) return Object.entries(whole);
  const grouped = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const { schema, doc } = JSON.parse(line);
    (grouped[schema] = grouped[schema] || []).push(doc);
  }
  return Object.entries(grouped);
}

function main() {
  const input = require("node:fs").readFileSync(0, "utf8");
  const result = { checked: 0, failures: [], unknown: [] };
  for (const [name, docs] of readInput(input)) {
    const schema = schemaFor(name);
    (Array.isArray(docs) ? docs : [docs]).forEach((doc, index) => {
      result.checked += 1;
      const parsed = schema.safeParse(doc);
      if (!parsed.success) {
        result.failures.push({ schema: name, index, issues: parsed.error.issues });
        return;
      }
      for (const where of unknownKeys(doc, parsed.data, "$", [])) {
        result.unknown.push({ schema: name, index, path: where });
      }
    });
  }
  process.stdout.write(JSON.stringify(result));
  process.exit(result.failures.length ? 1 : 0);
}

main();
