/**
 * GET /v1/events: the registry's events as Server-Sent Events, each `id: N`, `event: NAME` and
 * `data: JSON` (the HostEvent). Bounded on every side: at most `maxClients` streams (503 beyond),
 * a client whose unsent backlog passes `maxBacklogBytes` is dropped (it does not read, and the
 * host must not buffer for it without end), and `?since=N` (or EventSource's Last-Event-ID on a
 * reconnect) replays only what the last `replay` events still hold. A comment every `heartbeatMs`
 * keeps proxies and idle-timeouts from closing a quiet stream, and tells a client the host lives.
 */
import type { EventEmitter } from "node:events";
import type http from "node:http";
import * as z from "zod";
import type { Logger } from "../log.js";
import type { HostEvent } from "./registry.js";

export interface EventStreamLimits {
  maxClients: number;
  maxBacklogBytes: number;
  heartbeatMs: number;
  /** Events kept for `?since=`. */
  replay: number;
}

export const EVENT_STREAM_LIMITS: EventStreamLimits = {
  maxClients: 32,
  maxBacklogBytes: 1024 * 1024,
  heartbeatMs: 15_000,
  replay: 256,
};

/** The query of GET /v1/events (api-schemas.ts documents it). */
export const eventsQuery = z.strictObject({ since: z.string().regex(/^\d+$/).optional() });

/** One event as sent: `id` counts from 1 for the host's life. */
export const sseFrame = (id: number, e: HostEvent): string =>
  `id: ${id}\nevent: ${e.event}\ndata: ${JSON.stringify(e)}\n\n`;

/** Why a stream request is refused: the API answers it with this status and text. */
export class EventStreamRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class EventStream {
  private readonly clients = new Set<http.ServerResponse>();
  private readonly kept: { id: number; frame: string }[] = [];
  private lastId = 0;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly onEvent = (e: HostEvent) => this.publish(e);

  constructor(
    private readonly source: EventEmitter<{ event: [HostEvent] }>,
    private readonly log: Logger,
    private readonly limits: EventStreamLimits = EVENT_STREAM_LIMITS,
  ) {
    source.on("event", this.onEvent);
    this.heartbeat = setInterval(() => {
      for (const res of this.clients) this.send(res, ": heartbeat\n\n");
    }, limits.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Starts a stream on `res`, replaying after `since` when given; throws EventStreamRefusal. */
  serve(req: http.IncomingMessage, res: http.ServerResponse, since: string | null): void {
    // An EventSource reconnecting says where it got to: that wins over the URL's since.
    const after = req.headers["last-event-id"] ?? since ?? undefined;
    const q = eventsQuery.safeParse({ since: after });
    if (!q.success)
      throw new EventStreamRefusal(400, `since must be an event id (a non-negative integer), not ${after}`);
    const from = q.data.since === undefined ? undefined : Number(q.data.since);
    if (this.clients.size >= this.limits.maxClients)
      throw new EventStreamRefusal(503, `already ${this.limits.maxClients} event streams open`);
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    });
    this.clients.add(res);
    res.once("close", () => this.clients.delete(res));
    // A comment first, so that the client knows it is subscribed before any event comes.
    let head = `: doe-emu host events, last id ${this.lastId}\n\n`;
    if (from !== undefined) for (const k of this.kept) if (k.id > from) head += k.frame;
    this.send(res, head);
  }

  close(): void {
    clearInterval(this.heartbeat);
    this.source.off("event", this.onEvent);
    for (const res of this.clients) res.destroy();
  }

  private publish(e: HostEvent): void {
    const frame = sseFrame(++this.lastId, e);
    this.kept.push({ id: this.lastId, frame });
    if (this.kept.length > this.limits.replay) this.kept.shift();
    for (const res of this.clients) this.send(res, frame);
  }

  private send(res: http.ServerResponse, text: string): void {
    res.write(text);
    if (res.writableLength <= this.limits.maxBacklogBytes) return;
    this.log.warn(
      { peer: res.socket?.remoteAddress, backlog: res.writableLength },
      "event stream client does not read; dropped",
    );
    this.clients.delete(res);
    res.destroy();
  }
}
