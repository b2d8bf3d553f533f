/**
 * The management API: HTTP JSON on loopback (docs/ARCHITECTURE.md). Routes:
 *   GET  /v1/topology                 devices with their functions, TDEVs, TDIs
 *   POST /v1/devices                  {"control": "HOST:PORT"}: attach a device as `--device` does (202;
 *                                     scanned and registered in the background: watch the events)
 *   POST /v1/tdevs/{bdf}/authenticate SPDM authentication through the TDEV's CMA mailbox
 *   POST /v1/tdevs/{bdf}/connect      authenticate, hold a session, program and enable IDE (no-op when connected)
 *   POST /v1/tdevs/{bdf}/disconnect   stop the IDE keys, clear Enable, end the session (idempotent)
 *   GET  /v1/tdis/{bdf}               the TDI, with its live TDISP state while its TDEV is connected
 *   POST /v1/tdis/{bdf}/bind          {"vm": ID}: lock, verify the report, start (bind.ts); the TDEV must
 *                                     be connected (else 409); same VM again is a no-op, another VM 409
 *   POST /v1/tdis/{bdf}/unbind        stop the interface (no-op when unbound)
 *   GET  /v1/functions                every function of every device, sorted by BDF (config-access.ts)
 *   GET  /v1/functions/{bdf}/config   [?offset=&length=] config space as hex, 4096 bytes unless told
 *   POST /v1/functions/{bdf}/config   {"offset", "width": 1|2|4, "value"}: a config write, then the read-back
 *   GET  /                            the status page (status-page.ts): topology tree, counters, live events
 *   GET  /openapi.json                the OpenAPI 3.1 document of these routes, from api-schemas.ts
 *   GET  /v1/events                   [?since=ID] every registry event as Server-Sent Events (events.ts):
 *                                     at most 32 streams (503 beyond), a client that does not read dropped
 *   POST|GET|DELETE /v1/devices/{id}/faults  fault injection rules (faults-api.ts)
 * A path that names nothing is 404, a bad body 400; every error is {"error": text}, a bind the
 * device refuses or whose report does not verify adds "tdispError" or "mismatch" (502).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { protocolId } from "../../protocol/doe.js";
import { formatRoutingId, PORT_TYPES, parseRoutingId } from "../../protocol/pci.js";
import { hex } from "../bits.js";
import type { Logger } from "../log.js";
import { type Endpoint, formatEndpoint, parseEndpoint } from "../net/framed.js";
import { bindBody, deviceBody, emptyBody, openApiDocument } from "./api-schemas.js";
import { BindError, type TdispStateName } from "./bind.js";
import {
  BadConfigRequest,
  functionsView,
  hasFunction,
  readConfigRange,
  writeConfig,
} from "./config-access.js";
import { LinkBusyError } from "./connect.js";
import { EVENT_STREAM_LIMITS, EventStream, type EventStreamLimits, EventStreamRefusal } from "./events.js";
import { type DeviceFaults, type FaultCounts, faultsRoute } from "./faults-api.js";
import type { MmioKind } from "./mmio.js";
import type { AuthResult, Registry, TdevState, Tdi, TdiStateKind, VmId } from "./registry.js";
import { RegistryError } from "./registry.js";
import type { ConfigReader, ConfigWriter, ScannedMailbox } from "./scan.js";
import { STATUS_PAGE } from "./status-page.js";

/** The JSON of GET /v1/topology. */
export interface TopologyView {
  devices: {
    id: string;
    name: string;
    control: string;
    source: string;
    state: string;
    /** Its fault rules and the faults injected; null until fetched. */
    faults: FaultCounts | null;
    functions: {
      bdf: string;
      vendorId: number;
      deviceId: number;
      portType: string | null;
      isVf: boolean;
      tee: boolean;
      mailboxes: { capOffset: number; endpoint: string | null; protocols: string[] }[];
      /** Memory BARs; address and size in hex, address null when the MMIO window had no room. */
      bars: { index: number; type: MmioKind; prefetchable: boolean; size: string; address: string | null }[];
    }[];
  }[];
  tdevs: {
    bdf: string;
    device: string;
    cmaMailbox: string | null;
    securedMailbox: string | null;
    bounce: string;
    bounceStats: Record<string, number>;
    state: TdevState;
    auth: AuthResult | null;
    authError?: string;
    connected: boolean;
    /** The held session's ID while connected. */
    session: string | null;
    ide: "secure" | "insecure" | null;
  }[];
  tdis: {
    bdf: string;
    tdev: string;
    boundTo: VmId | null;
    state: TdiStateKind;
    /** The TDISP state last seen; null before any. */
    tdispState: TdispStateName | null;
    reportDigest: string | null;
  }[];
}

/** The JSON of GET /v1/tdis/{bdf}: the TDI with its live state and the report verified at bind. */
export interface TdiView {
  bdf: string;
  tdev: string;
  boundTo: VmId | null;
  state: TdiStateKind;
  /** Asked of the device while the TDEV is connected; null when it is not. */
  tdispState: TdispStateName | null;
  /** The report as decoded, bigints as hex strings; null while unbound. */
  report: ReportJson | null;
  /** SHA-256 of the report bytes, hex. */
  reportDigest: string | null;
  mmioReportingOffset: string | null;
}

export interface ReportJson {
  interfaceInfo: number;
  msixMessageControl: number;
  lnrControl: number;
  tphControl: number;
  mmioRanges: { firstPage: string; numberOfPages: number; rangeAttributes: number; rangeId: number }[];
  /** Hex. */
  deviceSpecificInfo: string;
}

const PORT_TYPE_NAMES = new Map<number, string>(Object.entries(PORT_TYPES).map(([name, v]) => [v, name]));

const mailboxText = (m: ScannedMailbox | undefined) =>
  m?.endpoint ? formatEndpoint(m.endpoint) : m ? `cap 0x${m.capOffset.toString(16)}` : null;

export function topologyView(registry: Registry): TopologyView {
  const byRid = <T extends { rid: number }>(xs: Iterable<T>) => [...xs].sort((a, b) => a.rid - b.rid);
  return {
    devices: [...registry.devices.values()]
      .sort((a, b) => (a.functions[0]?.rid ?? 0) - (b.functions[0]?.rid ?? 0))
      .map((d) => ({
        id: d.id,
        name: d.name,
        control: formatEndpoint(d.control),
        source: d.source,
        state: d.state,
        faults: d.faults ?? null,
        functions: d.functions.map((f) => ({
          bdf: formatRoutingId(f.rid),
          vendorId: f.vendorId,
          deviceId: f.deviceId,
          portType:
            f.portType === undefined
              ? null
              : (PORT_TYPE_NAMES.get(f.portType) ?? `0x${f.portType.toString(16)}`),
          isVf: f.pf !== undefined,
          tee: f.tee,
          mailboxes: d.mailboxes
            .filter((m) => m.rid === f.rid)
            .map((m) => ({
              capOffset: m.capOffset,
              endpoint: m.endpoint ? formatEndpoint(m.endpoint) : null,
              protocols: m.protocols.map(protocolId),
            })),
          bars: f.bars.map((b) => ({
            index: b.index,
            type: b.type,
            prefetchable: b.prefetchable,
            size: hex(b.size),
            address: b.address === undefined ? null : hex(b.address),
          })),
        })),
      })),
    tdevs: byRid(registry.tdevs.values()).map((t) => ({
      bdf: formatRoutingId(t.rid),
      device: t.device,
      cmaMailbox: mailboxText(t.cma),
      securedMailbox: mailboxText(t.secured),
      bounce: formatEndpoint(t.bouncer.address),
      bounceStats: { ...t.bouncer.stats },
      state: t.state,
      auth: t.auth,
      ...(t.authError ? { authError: t.authError } : {}),
      connected: t.state === "connected",
      session: t.link?.session ?? null,
      ide: t.ide,
    })),
    tdis: byRid(registry.tdis.values()).map((t) => ({
      ...tdiBase(t),
      tdispState: t.tdispState,
      reportDigest: t.evidence?.reportDigest ?? null,
    })),
  };
}

const tdiBase = (t: Tdi) => ({
  bdf: formatRoutingId(t.rid),
  tdev: formatRoutingId(t.tdev),
  boundTo: t.state.kind === "bound" ? t.state.vm : null,
  state: t.state.kind,
});

export function tdiView(t: Tdi, tdispState: TdispStateName | null): TdiView {
  const e = t.evidence;
  return {
    ...tdiBase(t),
    tdispState,
    report: e
      ? {
          ...e.report,
          mmioRanges: e.report.mmioRanges.map((r) => ({ ...r, firstPage: hex(r.firstPage) })),
          deviceSpecificInfo: e.report.deviceSpecificInfo.toString("hex"),
        }
      : null,
    reportDigest: e?.reportDigest ?? null,
    mmioReportingOffset: e ? hex(e.mmioReportingOffset) : null,
  };
}

/** What the API drives: the registry, and what needs the host's transports. */
export interface ApiTarget {
  registry: Registry;
  authenticate(rid: number): Promise<AuthResult>;
  connect(rid: number): Promise<"connected" | "unchanged">;
  disconnect(rid: number): Promise<"disconnected" | "unchanged">;
  bind(rid: number, vm: VmId): Promise<"bound" | "unchanged">;
  unbind(rid: number): Promise<"unbound" | "unchanged">;
  probeTdi(rid: number): Promise<TdispStateName | null>;
  /** Config accesses over the control wire of the device that owns the function. */
  configRead: ConfigReader;
  configWrite: ConfigWriter;
  /** Attaches a device by its control endpoint as `--device` does; one already given: no change. */
  addDevice(control: Endpoint): void;
  /** The fault rules of a device, by its ID (RegistryError notFound when there is none). */
  faults(device: string): DeviceFaults;
}

/** HOST:PORT as an endpoint, or undefined when it is not one. */
function endpointOf(text: string): Endpoint | undefined {
  try {
    return parseEndpoint(text);
  } catch {
    return undefined;
  }
}

/** The source of a device given to the host (`--device`, POST /v1/devices): attached, retried while absent. */
export const GIVEN_SOURCE = "flag";

/**
 * A RegistryError as its HTTP status; a full session queue 503; anything else is the device's
 * failure, 502, with a BindError's detail.
 */
function tdevFailure(e: unknown, what: string): HttpError {
  if (e instanceof RegistryError) return new HttpError(e.code === "notFound" ? 404 : 409, e.message);
  const why = e instanceof Error ? e.message : String(e);
  if (e instanceof LinkBusyError) return new HttpError(503, `${what}: ${why}`);
  return new HttpError(502, `${what} failed: ${why}`, e instanceof BindError ? e.detail : {});
}

export interface ApiServer {
  address: Endpoint;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** More fields of the error's JSON. */
    readonly detail: Record<string, string> = {},
  ) {
    super(message);
  }
}

const MAX_BODY = 64 * 1024;
/** API connections open at once; more than the event streams' cap, so those never starve the rest. */
export const API_MAX_CONNECTIONS = 64;
/** A client gets this long to send its whole request (Node's default is 300 s). */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * The body as JSON (undefined when empty). Past MAX_BODY the request is refused with 413 while the
 * rest of the body is read and dropped, so the client gets the answer rather than a reset; the
 * server's request timeout bounds how long that may take.
 */
function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      if (size > MAX_BODY) return;
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
      else reject(new HttpError(413, `body exceeds ${MAX_BODY} bytes`));
    });
    // A client that goes away mid-body ("aborted") is its own doing, not an internal error.
    req.once("error", (e) => reject(new HttpError(400, `request body: ${e.message}`)));
    req.once("end", () => {
      if (size > MAX_BODY) return;
      const text = Buffer.concat(chunks).toString("utf8");
      if (text.trim() === "") return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new HttpError(400, "body is not valid JSON"));
      }
    });
  });
}

function bdfParam(text: string, what: "TDEV" | "TDI" | "function", exists: (rid: number) => boolean): number {
  let bdf: string;
  try {
    bdf = decodeURIComponent(text);
  } catch {
    // A bad percent-escape is the client's error, not ours.
    throw new HttpError(400, `malformed ${what} in the path: ${text}`);
  }
  const rid = parseRoutingId(bdf);
  if (rid === undefined || !exists(rid)) throw new HttpError(404, `no ${what} ${bdf}`);
  return rid;
}

/**
 * The request target as a URL, always on our origin: "//x/y" is the path //x/y, not host x. A target
 * that is not a path (e.g. "*", an absolute URL) is undefined, the client's error.
 */
function requestUrl(req: http.IncomingMessage): URL | undefined {
  if (!req.url?.startsWith("/")) return undefined;
  try {
    return new URL(`http://localhost${req.url ?? "/"}`);
  } catch {
    return undefined;
  }
}

async function route(target: ApiTarget, req: http.IncomingMessage, url: URL): Promise<[number, unknown]> {
  const { registry } = target;
  const path = url.pathname;
  const method = req.method ?? "GET";
  const expect = (m: string) => {
    if (method !== m) throw new HttpError(405, `${method} ${path}: use ${m}`);
  };
  // Read (or refuse) the whole body first, so every answer, an error too, comes after it.
  const body = await readJson(req);
  if (path === "/v1/topology") {
    expect("GET");
    return [200, topologyView(registry)];
  }
  let m = /^\/v1\/tdevs\/([^/]+)\/authenticate$/.exec(path);
  if (m) {
    expect("POST");
    if (!emptyBody.safeParse(body).success) throw new HttpError(400, "authenticate takes no body (or {})");
    const rid = bdfParam(m[1]!, "TDEV", (r) => registry.tdevs.has(r));
    if (!registry.tdevs.get(rid)?.cma)
      throw new HttpError(409, `TDEV ${formatRoutingId(rid)} has no CMA mailbox to authenticate through`);
    try {
      return [200, { bdf: formatRoutingId(rid), auth: await target.authenticate(rid) }];
    } catch (e) {
      throw tdevFailure(e, `authentication of ${formatRoutingId(rid)}`);
    }
  }
  m = /^\/v1\/tdevs\/([^/]+)\/(connect|disconnect)$/.exec(path);
  if (m) {
    expect("POST");
    const op = m[2] as "connect" | "disconnect";
    if (!emptyBody.safeParse(body).success) throw new HttpError(400, `${op} takes no body (or {})`);
    const rid = bdfParam(m[1]!, "TDEV", (r) => registry.tdevs.has(r));
    const bdf = formatRoutingId(rid);
    let result: string;
    try {
      result = await target[op](rid);
    } catch (e) {
      throw tdevFailure(e, `${op} of ${bdf}`);
    }
    const tdev = registry.tdevs.get(rid);
    return [
      200,
      {
        bdf,
        connected: tdev?.state === "connected",
        session: tdev?.link?.session ?? null,
        ide: tdev?.ide ?? null,
        changed: result !== "unchanged",
      },
    ];
  }
  m = /^\/v1\/tdis\/([^/]+)$/.exec(path);
  if (m) {
    expect("GET");
    // Whether it names a TDI is the target's to say: VFs may have come or gone since the last look.
    const rid = bdfParam(m[1]!, "TDI", () => true);
    let state: TdispStateName | null;
    try {
      state = await target.probeTdi(rid);
    } catch (e) {
      throw tdevFailure(e, `GET_DEVICE_INTERFACE_STATE of ${formatRoutingId(rid)}`);
    }
    const tdi = registry.tdis.get(rid);
    if (!tdi) throw new HttpError(404, `no TDI ${formatRoutingId(rid)}`);
    return [200, tdiView(tdi, state)];
  }
  m = /^\/v1\/tdis\/([^/]+)\/(bind|unbind)$/.exec(path);
  if (m) {
    expect("POST");
    const op = m[2] as "bind" | "unbind";
    const bind = op === "bind" ? bindBody.safeParse(body) : undefined;
    if (bind && !bind.success)
      throw new HttpError(400, `body must be {"vm": ID} (a string or a non-negative integer)`);
    if (!bind && !emptyBody.safeParse(body).success) throw new HttpError(400, "unbind takes no body (or {})");
    // Whether it names a TDI is the target's to say: VFs may have come or gone since the last look.
    const rid = bdfParam(m[1]!, "TDI", () => true);
    const bdf = formatRoutingId(rid);
    let result: string;
    try {
      result = bind?.data ? await target.bind(rid, bind.data.vm) : await target.unbind(rid);
    } catch (e) {
      throw tdevFailure(e, `${op} of ${bdf}`);
    }
    const tdi = registry.tdis.get(rid);
    const boundTo = tdi?.state.kind === "bound" ? tdi.state.vm : null;
    const evidence = {
      tdispState: tdi?.tdispState ?? null,
      reportDigest: tdi?.evidence?.reportDigest ?? null,
    };
    return [200, { bdf, boundTo, changed: result !== "unchanged", ...evidence }];
  }
  if (path === "/v1/devices") {
    expect("POST");
    const b = deviceBody.safeParse(body);
    const control = b.success ? endpointOf(b.data.control) : undefined;
    if (!control) throw new HttpError(400, `body must be {"control": "HOST:PORT"}`);
    target.addDevice(control);
    return [202, { control: formatEndpoint(control), source: GIVEN_SOURCE }];
  }
  if (path === "/v1/functions") {
    expect("GET");
    return [200, functionsView(registry)];
  }
  m = /^\/v1\/functions\/([^/]+)\/config$/.exec(path);
  if (m) {
    if (method !== "GET" && method !== "POST") throw new HttpError(405, `${method} ${path}: use GET or POST`);
    const rid = bdfParam(m[1]!, "function", (r) => hasFunction(registry, r));
    const query = url.searchParams;
    try {
      const { configRead: read, configWrite: write } = target;
      const view =
        method === "GET"
          ? await readConfigRange(read, rid, query)
          : await writeConfig(read, write, rid, body);
      return [200, view];
    } catch (e) {
      if (e instanceof BadConfigRequest) throw new HttpError(400, e.message);
      throw tdevFailure(e, `config ${method === "GET" ? "read" : "write"} of ${formatRoutingId(rid)}`);
    }
  }
  const faults = await faultsRoute((d) => target.faults(d), method, path, body);
  if (faults) return faults;
  if (path === "/openapi.json") {
    expect("GET");
    return [200, openApiDocument()];
  }
  // Served by startApi for GET, before a body is read: here only another method reaches them.
  if (path === "/v1/events" || path === "/") expect("GET");
  throw new HttpError(404, `no such resource: ${path}`);
}

/** A JSON answer: route's, or a refused event stream's. */
function answer(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: http.OutgoingHttpHeaders = {},
) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(`${JSON.stringify(body)}\n`);
}

export function startApi(
  opts: Endpoint & {
    tsm: ApiTarget;
    log: Logger;
    requestTimeoutMs?: number;
    maxConnections?: number;
    eventLimits?: Partial<EventStreamLimits>;
  },
): Promise<ApiServer> {
  const { log } = opts;
  const requestTimeout = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const events = new EventStream(opts.tsm.registry, log, { ...EVENT_STREAM_LIMITS, ...opts.eventLimits });
  const server = http.createServer(
    // Node checks the timeouts every connectionsCheckingInterval (30 s unless told).
    {
      requestTimeout,
      headersTimeout: requestTimeout,
      connectionsCheckingInterval: Math.min(1000, requestTimeout),
    },
    (req, res) => {
      const url = requestUrl(req);
      if (!url) return answer(res, 400, { error: `malformed request target ${req.url}` });
      if (req.method === "GET" && url.pathname === "/") {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" });
        return void res.end(STATUS_PAGE);
      }
      if (req.method === "GET" && url.pathname === "/v1/events") {
        // Served here, not by route: it answers before any body, and stays open.
        try {
          return events.serve(req, res, url.searchParams.get("since"));
        } catch (e) {
          if (!(e instanceof EventStreamRefusal)) throw e;
          log.warn({ status: e.status, err: e.message }, "event stream refused");
          return answer(res, e.status, { error: e.message });
        }
      }
      void route(opts.tsm, req, url)
        .catch((e: unknown): [number, unknown] => {
          if (e instanceof HttpError) return [e.status, { error: e.message, ...e.detail }];
          log.error({ err: e instanceof Error ? e.stack : String(e) }, "API request failed");
          return [500, { error: "internal error" }];
        })
        .then(([status, body]) => {
          log.debug({ method: req.method, url: req.url, status }, "api");
          // A refused body may still be arriving: answer, then close instead of reading another request.
          answer(res, status, body, status === 413 ? { connection: "close" } : {});
        });
    },
  );
  // Past the cap a connection is closed at once: no local client can exhaust the host's descriptors.
  server.maxConnections = opts.maxConnections ?? API_MAX_CONNECTIONS;
  server.on("drop", () =>
    log.warn(`API connection refused: ${server.maxConnections} connections already open`),
  );
  return new Promise((resolve, reject) => {
    const failed = (e: Error) => {
      events.close();
      reject(e);
    };
    server.once("error", failed);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off("error", failed);
      const a = server.address() as AddressInfo;
      resolve({
        address: { host: a.address, port: a.port },
        close: () =>
          new Promise<void>((done) => {
            events.close();
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
