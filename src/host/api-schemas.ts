/**
 * The management API's schemas, one source of truth: the handlers validate request bodies and
 * queries with them, the response schemas are typed against the views the handlers return, and
 * GET /openapi.json is generated from both (z.toJSONSchema, JSON Schema 2020-12 as OpenAPI 3.1 takes).
 * A route added to api.ts gets its entry in ROUTES here.
 */
import * as z from "zod";
import { TdiState } from "../../protocol/tdisp.js";
import { faultRuleSchema } from "../device/faults.js";
import type { TdiView, TopologyView } from "./api.js";
import type { TdispStateName } from "./bind.js";
import {
  type ConfigReadView,
  type ConfigWriteView,
  configRangeQuery,
  configWriteBody,
  type FunctionsView,
} from "./config-access.js";
import { eventsQuery } from "./events.js";
import type { AuthResult, TdevState, TdiStateKind } from "./registry.js";

export const bindBody = z.strictObject({
  vm: z.union([z.string().min(1).max(256), z.number().int().min(0)]),
});
/** The body of POST /v1/devices. */
export const deviceBody = z.strictObject({
  control: z.string().regex(/^(\[[^\]]+\]|[^:]+):\d{1,5}$/, "must be HOST:PORT"),
});
export const emptyBody = z.union([z.undefined(), z.strictObject({})]);

const bdf = z.string().regex(/^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/);
const hexNumber = z.string().regex(/^0x[0-9a-f]+$/);
const vmId = z.union([z.string(), z.number().int().min(0)]);
const tdispState = z.enum(Object.keys(TdiState) as [TdispStateName, ...TdispStateName[]]).nullable();
const tdiStateKind: z.ZodType<TdiStateKind> = z.enum(["unbound", "binding", "bound", "unbinding"]);
const tdevState: z.ZodType<TdevState> = z.enum([
  "unauthenticated",
  "authenticating",
  "authenticated",
  "connecting",
  "connected",
  "disconnecting",
  "failed",
]);

const authResult: z.ZodType<AuthResult> = z.object({
  version: z.string(),
  algorithms: z.record(z.string(), z.string()),
  leafCertDigest: z.string(),
  leafSubject: z.string(),
  trustAnchor: z.string().nullable(),
  measurements: z.array(
    z.object({
      index: z.number().int(),
      type: z.string(),
      form: z.enum(["digest", "raw"]),
      value: z.string(),
    }),
  ),
  at: z.string(),
});

const topologyView: z.ZodType<TopologyView> = z.object({
  devices: z.array(
    z.object({
      id: z.string(),
      name: z.string(),
      control: z.string(),
      source: z.string(),
      state: z.enum(["adding", "present", "removing"]),
      faults: z.object({ rules: z.number().int(), injected: z.number().int() }).nullable(),
      functions: z.array(
        z.object({
          bdf,
          vendorId: z.number().int(),
          deviceId: z.number().int(),
          portType: z.string().nullable(),
          isVf: z.boolean(),
          tee: z.boolean(),
          mailboxes: z.array(
            z.object({
              capOffset: z.number().int(),
              endpoint: z.string().nullable(),
              protocols: z.array(z.string()),
            }),
          ),
          bars: z.array(
            z.object({
              index: z.number().int(),
              type: z.enum(["mem32", "mem64"]),
              prefetchable: z.boolean(),
              size: hexNumber,
              address: hexNumber.nullable(),
            }),
          ),
        }),
      ),
    }),
  ),
  tdevs: z.array(
    z.object({
      bdf,
      device: z.string(),
      cmaMailbox: z.string().nullable(),
      securedMailbox: z.string().nullable(),
      bounce: z.string(),
      bounceStats: z.record(z.string(), z.number().int()),
      state: tdevState,
      auth: authResult.nullable(),
      authError: z.string().optional(),
      connected: z.boolean(),
      session: z.string().nullable(),
      ide: z.enum(["secure", "insecure"]).nullable(),
    }),
  ),
  tdis: z.array(
    z.object({
      bdf,
      tdev: bdf,
      boundTo: vmId.nullable(),
      state: tdiStateKind,
      tdispState,
      reportDigest: z.string().nullable(),
    }),
  ),
});

const tdiView: z.ZodType<TdiView> = z.object({
  bdf,
  tdev: bdf,
  boundTo: vmId.nullable(),
  state: tdiStateKind,
  tdispState,
  report: z
    .object({
      interfaceInfo: z.number().int(),
      msixMessageControl: z.number().int(),
      lnrControl: z.number().int(),
      tphControl: z.number().int(),
      mmioRanges: z.array(
        z.object({
          firstPage: hexNumber,
          numberOfPages: z.number().int(),
          rangeAttributes: z.number().int(),
          rangeId: z.number().int(),
        }),
      ),
      deviceSpecificInfo: z.string(),
    })
    .nullable(),
  reportDigest: z.string().nullable(),
  mmioReportingOffset: hexNumber.nullable(),
});

const functionsView: z.ZodType<FunctionsView> = z.object({
  functions: z.array(
    z.object({
      bdf,
      device: z.string(),
      vendorId: z.number().int(),
      deviceId: z.number().int(),
      pf: bdf.nullable(),
    }),
  ),
});

const configReadView: z.ZodType<ConfigReadView> = z.object({
  bdf,
  offset: z.number().int(),
  length: z.number().int(),
  data: z.string(),
});

const configWriteView: z.ZodType<ConfigWriteView> = z.object({
  bdf,
  offset: z.number().int(),
  width: z.union([z.literal(1), z.literal(2), z.literal(4)]),
  value: z.number().int(),
});

const tdevLinkAnswer = z.object({
  bdf,
  connected: z.boolean(),
  session: z.string().nullable(),
  ide: z.enum(["secure", "insecure"]).nullable(),
  changed: z.boolean(),
});

const tdiBindAnswer = z.object({
  bdf,
  boundTo: vmId.nullable(),
  changed: z.boolean(),
  tdispState,
  reportDigest: z.string().nullable(),
});

/** Every error: its text, and for a bind the device refused or whose report did not verify, why. */
const errorBody = z.looseObject({
  error: z.string(),
  tdispError: z.string().optional(),
  mismatch: z.string().optional(),
});

interface Route {
  summary: string;
  body?: z.ZodType;
  query?: z.ZodObject;
  /** The success answer: a JSON schema, or another media type and its description. */
  ok: z.ZodType | { type: string; description: string };
  /** The success status, 200 unless told. */
  status?: number;
  /** Error statuses beyond 400, 404 and 405, which every route may answer. */
  errors?: number[];
}

const tdevPath = "/v1/tdevs/{bdf}";
const tdiPath = "/v1/tdis/{bdf}";
const configPath = "/v1/functions/{bdf}/config";
const faultsPath = "/v1/devices/{id}/faults";
const faultsRoute = (summary: string, ok: z.ZodType, extra: Partial<Route> = {}): Route => ({
  summary,
  ok,
  errors: [502],
  ...extra,
});

/** A route driving the device: it may be busy (409), fail on the device (502) or find the link full (503). */
const deviceRoute = (summary: string, ok: z.ZodType, body?: z.ZodType): Route => ({
  summary,
  ok,
  ...(body ? { body } : {}),
  errors: [409, 502, 503],
});

/** The routes of api.ts, by path and method. */
export const ROUTES: Record<string, { get?: Route; post?: Route; delete?: Route }> = {
  "/v1/topology": { get: { summary: "Devices with their functions, TDEVs and TDIs", ok: topologyView } },
  [`${tdevPath}/authenticate`]: {
    post: deviceRoute(
      "SPDM authentication through the TDEV's CMA mailbox",
      z.object({ bdf, auth: authResult }),
      emptyBody,
    ),
  },
  [`${tdevPath}/connect`]: {
    post: deviceRoute(
      "Authenticate, hold a session, program and enable IDE (no-op when connected)",
      tdevLinkAnswer,
      emptyBody,
    ),
  },
  [`${tdevPath}/disconnect`]: {
    post: deviceRoute(
      "Stop the IDE keys, clear Enable, end the session (idempotent)",
      tdevLinkAnswer,
      emptyBody,
    ),
  },
  [tdiPath]: { get: deviceRoute("The TDI, with its live TDISP state while its TDEV is connected", tdiView) },
  [`${tdiPath}/bind`]: {
    post: deviceRoute("Lock, verify the report, start; the TDEV must be connected", tdiBindAnswer, bindBody),
  },
  [`${tdiPath}/unbind`]: {
    post: deviceRoute("Stop the interface (no-op when unbound)", tdiBindAnswer, emptyBody),
  },
  "/v1/devices": {
    post: {
      summary: "Attach a device by its control endpoint, as --device does; scanned in the background",
      body: deviceBody,
      ok: z.object({ control: z.string(), source: z.string() }),
      status: 202,
    },
  },
  "/v1/functions": { get: { summary: "Every function of every device, sorted by BDF", ok: functionsView } },
  [configPath]: {
    get: {
      ...deviceRoute("Config space as hex, 4096 bytes unless told", configReadView),
      query: configRangeQuery,
    },
    post: deviceRoute("A config write, then the read-back", configWriteView, configWriteBody),
  },
  [faultsPath]: {
    post: faultsRoute(
      "Add a fault injection rule (src/device/faults.ts), forwarded over the device's control wire",
      z.object({ device: z.string(), id: z.number().int() }),
      { body: faultRuleSchema, status: 201 },
    ),
    get: faultsRoute(
      "The device's rules, each with the faults it injected, and the total",
      z.object({
        device: z.string(),
        rules: z.array(z.looseObject({ id: z.number().int(), injected: z.number().int() })),
        injected: z.number().int(),
      }),
    ),
    delete: faultsRoute("Remove every rule", z.object({ device: z.string(), cleared: z.number().int() })),
  },
  "/v1/events": {
    get: {
      summary: "Every registry event as Server-Sent Events (id, event, data: the event's JSON)",
      query: eventsQuery,
      ok: {
        type: "text/event-stream",
        description: "One frame per event; a ': heartbeat' comment every 15 s. 503 past 32 streams.",
      },
      errors: [503],
    },
  },
  "/": {
    get: {
      summary: "The status page: topology tree, counters and the live event stream",
      ok: { type: "text/html", description: "One self-contained HTML document" },
    },
  },
  "/openapi.json": {
    get: { summary: "This document", ok: { type: "application/json", description: "OpenAPI 3.1" } },
  },
};

const jsonSchema = (s: z.ZodType) => {
  // Queries are read before their transforms; bodies and answers are what goes over the wire.
  const { $schema: _, ...rest } = z.toJSONSchema(s, { io: "input", unrepresentable: "any" });
  return rest;
};

const content = (ok: Route["ok"]) =>
  ok instanceof z.ZodType
    ? { description: "OK", content: { "application/json": { schema: jsonSchema(ok) } } }
    : { description: ok.description, content: { [ok.type]: { schema: { type: "string" } } } };

/** The OpenAPI 3.1 document of the API. */
export function openApiDocument(): Record<string, unknown> {
  const errorResponse = {
    description: "Error",
    content: { "application/json": { schema: jsonSchema(errorBody) } },
  };
  const paths = Object.fromEntries(
    Object.entries(ROUTES).map(([path, methods]) => [
      path,
      Object.fromEntries(
        Object.entries(methods).map(([method, r]) => {
          const params = [
            ...(path.includes("{id}")
              ? [
                  {
                    name: "id",
                    in: "path",
                    required: true,
                    schema: { type: "string" },
                    description: "device ID",
                  },
                ]
              : []),
            ...(path.includes("{bdf}")
              ? [
                  {
                    name: "bdf",
                    in: "path",
                    required: true,
                    schema: jsonSchema(bdf),
                    description: "BB:DD.F",
                  },
                ]
              : []),
            ...Object.entries(r.query?.shape ?? {}).map(([name, s]) => ({
              name,
              in: "query",
              required: false,
              schema: jsonSchema(s as z.ZodType),
            })),
          ];
          const errors = [400, 404, 405, ...(r.errors ?? [])];
          return [
            method,
            {
              summary: r.summary,
              ...(params.length ? { parameters: params } : {}),
              ...(r.body
                ? { requestBody: { content: { "application/json": { schema: jsonSchema(r.body) } } } }
                : {}),
              responses: {
                [r.status ?? 200]: content(r.ok),
                ...Object.fromEntries(errors.map((s) => [s, errorResponse])),
              },
            },
          ];
        }),
      ),
    ]),
  );
  return {
    openapi: "3.1.0",
    info: { title: "doe-emu host management API", version: "1" },
    paths,
  };
}
