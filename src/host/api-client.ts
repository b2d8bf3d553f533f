/**
 * A client of the management API for the CLI, the fixture and tests. One connection per request
 * (no keep-alive agent), so a caller is never left holding idle sockets.
 */
import http from "node:http";
import { type Endpoint, formatEndpoint } from "../net/framed.js";
import type { TopologyView } from "./api.js";
import type { HostEvent } from "./registry.js";

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
}

export function apiRequest<T = unknown>(
  api: Endpoint,
  method: "GET" | "POST" | "DELETE",
  path: string,
  body?: unknown,
  timeoutMs = 30_000,
): Promise<ApiResponse<T>> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: api.host,
        port: api.port,
        method,
        path,
        agent: false,
        timeout: timeoutMs,
        headers: payload ? { "content-type": "application/json" } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as T });
          } catch {
            reject(
              new Error(
                `${method} ${path} on ${formatEndpoint(api)}: answer is not JSON: ${text.slice(0, 200)}`,
              ),
            );
          }
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} on ${formatEndpoint(api)} timed out`)));
    req.on("error", (e) =>
      reject(new Error(`cannot reach the host API on ${formatEndpoint(api)}: ${e.message}`)),
    );
    req.end(payload);
  });
}

export async function getTopology(api: Endpoint): Promise<TopologyView> {
  const rsp = await apiRequest<TopologyView>(api, "GET", "/v1/topology");
  if (rsp.status !== 200) throw new Error(`GET /v1/topology answered ${rsp.status}`);
  return rsp.body;
}

/** One event of GET /v1/events. */
export interface HostEventMessage {
  id: number;
  event: HostEvent;
}

export interface EventWatch {
  /** Ends the stream; `closed` then resolves. */
  close(): void;
  /** Resolves when the stream ends: undefined after close(), else why it ended. */
  closed: Promise<Error | undefined>;
}

/**
 * Subscribes to the host's event stream; resolves once subscribed, so that every event after that
 * reaches `onEvent`, in order. `since` replays the events after that id the host still keeps.
 */
export function watchEvents(
  api: Endpoint,
  onEvent: (m: HostEventMessage) => void,
  opts: { since?: number } = {},
): Promise<EventWatch> {
  const path = `/v1/events${opts.since === undefined ? "" : `?since=${opts.since}`}`;
  return new Promise((resolve, reject) => {
    let ended: (why: Error | undefined) => void = () => {};
    const closed = new Promise<Error | undefined>((r) => (ended = r));
    let closing = false;
    const req = http.get({ host: api.host, port: api.port, path, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        req.destroy();
        return reject(new Error(`GET ${path} on ${formatEndpoint(api)} answered ${res.statusCode}`));
      }
      resolve({
        close: () => {
          closing = true;
          req.destroy();
        },
        closed,
      });
      res.setEncoding("utf8");
      const parser = sseParser((name, data, id) => {
        if (name === "message") return;
        onEvent({ id: Number(id), event: JSON.parse(data) as HostEvent });
      });
      res.on("data", parser);
      res.once("close", () =>
        ended(closing ? undefined : new Error(`the host on ${formatEndpoint(api)} ended the event stream`)),
      );
    });
    req.once("error", (e) => {
      if (closing) return;
      reject(new Error(`cannot reach the host API on ${formatEndpoint(api)}: ${e.message}`));
      ended(e);
    });
  });
}

/** An SSE parser fed text chunks: calls `dispatch` per event (comments and retry ignored). */
function sseParser(dispatch: (event: string, data: string, id: string) => void): (chunk: string) => void {
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let id = "";
  return (chunk) => {
    buffer += chunk;
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (line === "") {
        if (data.length) dispatch(event || "message", data.join("\n"), id);
        [event, data] = ["", []];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
  };
}

/** topologyReaches gave up: `last` is the topology it saw last. */
export class TopologyTimeout extends Error {
  override readonly name = "TopologyTimeout";
  constructor(
    readonly last: TopologyView,
    timeoutMs: number,
  ) {
    super(`the topology did not reach the expected state within ${timeoutMs} ms`);
  }
}

/**
 * Resolves with the topology once `holds(view)` is true: at once, or after the event that makes it
 * so (read on the event stream, not by polling); rejects with TopologyTimeout after `timeoutMs`.
 */
export async function topologyReaches(
  api: Endpoint,
  holds: (view: TopologyView) => boolean,
  timeoutMs = 30_000,
): Promise<TopologyView> {
  let changed = true;
  let wake = () => {};
  const watch = await watchEvents(api, () => {
    changed = true;
    wake();
  });
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<"expired">((r) => (timer = setTimeout(() => r("expired"), timeoutMs)));
  const ended = watch.closed.then((e) => {
    throw e ?? new Error("event stream closed");
  });
  // Handled by the race below, or never needed when the topology holds at once.
  ended.catch(() => undefined);
  try {
    for (;;) {
      while (changed) {
        changed = false;
        const view = await getTopology(api);
        if (holds(view)) return view;
      }
      const woken = new Promise<"event">((r) => (wake = () => r("event")));
      if ((await Promise.race([woken, expired, ended])) === "expired")
        throw new TopologyTimeout(await getTopology(api), timeoutMs);
    }
  } finally {
    clearTimeout(timer);
    watch.close();
  }
}
