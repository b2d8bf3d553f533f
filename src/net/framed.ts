/**
 * Framed TCP transport shared by every endpoint and client: the spdm-emu frame codec over a
 * socket, with TCP_NODELAY, one write per frame, quick ACKs while a frame is incomplete, a payload
 * bound checked before allocation, connection tracking and request timeouts.
 */
import { EventEmitter } from "node:events";
import net from "node:net";
import { DecodeError } from "../../protocol/errors.js";
import {
  DEFAULT_MAX_FRAME_PAYLOAD,
  encodeFrame,
  FrameDecoder,
  type SocketFrame,
} from "../../protocol/socket.js";
import { type Logger, silentLogger } from "../log.js";
import { armQuickAck } from "./quickack.js";

export interface Endpoint {
  host: string;
  port: number;
}

export const formatEndpoint = (e: Endpoint): string =>
  e.host.includes(":") ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;

export const sameEndpoint = (a: Endpoint, b: Endpoint): boolean => a.host === b.host && a.port === b.port;

/** Parses "HOST:PORT" or "[v6]:PORT"; throws with a readable message otherwise. */
export function parseEndpoint(text: string): Endpoint {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new Error(`"${text}" is not HOST:PORT`);
  return { host: (m[1] ?? m[2])!, port };
}

export interface ConnectionOptions {
  maxPayload?: number;
  log?: Logger;
  /** How long part of a frame may sit unfinished before the connection is closed (ms). */
  partialFrameTimeoutMs?: number;
  /** Set by FramedServer for the connections it accepts. */
  serving?: boolean;
}

/** A peer that stops halfway through a frame for this long is gone or hostile; idle between frames is fine. */
export const DEFAULT_PARTIAL_FRAME_TIMEOUT_MS = 5000;

interface FramedConnectionEvents {
  frame: [SocketFrame];
  close: [];
}

/**
 * One framed socket. Emits "frame" per received frame and "close" once. Bad framing, or part of a
 * frame left unfinished too long, closes it. Reading stops while our own writes are not drained (a
 * peer that sends but does not read) or while the consumer holds it (`holdReading`), so a peer can
 * never make us buffer more than one read's worth of frames and answers. Its socket's bytes come
 * through `receive`, from net's `onread` (see readBuffer), not "data" events.
 */
export class FramedConnection extends EventEmitter<FramedConnectionEvents> {
  readonly peer: string;
  private readonly decoder: FrameDecoder;
  private readonly log: Logger;
  private readonly partialFrameTimeoutMs: number;
  /** Since when (performance.now()) part of a frame has waited for the rest; undefined while none waits. */
  private partialSince: number | undefined;
  private partialTimer: NodeJS.Timeout | undefined;
  private writeBlocked = false;
  private consumerHold = false;
  /** Accepted by a server: answers we cannot send stop our reading. A client never pauses for that. */
  private readonly serving: boolean;
  /** Sees every frame received and sent, in wire order (a pcap capture, src/net/capture.ts). */
  tap: ((frame: SocketFrame) => void) | undefined;

  constructor(
    readonly socket: net.Socket,
    opts: ConnectionOptions = {},
  ) {
    super();
    this.decoder = new FrameDecoder(opts.maxPayload ?? DEFAULT_MAX_FRAME_PAYLOAD);
    this.peer = formatEndpoint({ host: socket.remoteAddress ?? "?", port: socket.remotePort ?? 0 });
    this.log = opts.log ?? silentLogger;
    this.partialFrameTimeoutMs = opts.partialFrameTimeoutMs ?? DEFAULT_PARTIAL_FRAME_TIMEOUT_MS;
    this.serving = opts.serving ?? false;
    socket.setNoDelay(true);
    socket.on("drain", () => {
      this.writeBlocked = false;
      this.updateFlow();
    });
    socket.on("error", (err) => this.log.debug({ err: err.message }, "socket error"));
    socket.once("close", () => {
      clearTimeout(this.partialTimer);
      this.emit("close");
    });
  }

  /** While held, no more frames are read from the peer (the consumer's queue is full). */
  holdReading(hold: boolean): void {
    if (hold === this.consumerHold) return;
    this.consumerHold = hold;
    this.updateFlow();
  }

  private updateFlow(): void {
    const pause = this.writeBlocked || this.consumerHold;
    if (pause === this.socket.isPaused() || this.socket.destroyed) return;
    if (pause) {
      this.log.debug({ unsent: this.socket.writableLength, held: this.consumerHold }, "reading paused");
      this.socket.pause();
    } else this.socket.resume();
  }

  get closed(): boolean {
    return this.socket.destroyed;
  }

  /** Takes bytes read from the socket; keeps `chunk` (see FrameDecoder.push), so it must not be reused. */
  receive(chunk: Buffer): void {
    let frames: SocketFrame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      this.log.warn({ err: e.message }, "broken framing; closing connection");
      this.socket.destroy();
      return;
    }
    // Part of a frame is still to come: ACK now, so a peer that sends each header field on its
    // own with Nagle on releases the next piece at once. A whole frame gets its ACK on our answer.
    if (this.decoder.pending > 0) {
      armQuickAck(this.socket, (msg) => this.log.warn(msg));
      if (this.partialSince === undefined) {
        this.partialSince = performance.now();
        this.partialTimer ??= this.watchPartial(this.partialFrameTimeoutMs);
      }
    } else this.partialSince = undefined;
    for (const f of frames) {
      if (this.socket.destroyed) return;
      this.tap?.(f);
      this.emit("frame", f);
    }
  }

  /**
   * One timer watches the connection's unfinished frames: set when a frame is first left
   * unfinished, it stays when that frame completes and, when it fires, re-arms for the unfinished
   * frame of the moment, if any. DMTF's requester leaves every frame unfinished at first (it sends
   * each header field on its own), and a timer set and cleared per frame cost more than the read.
   */
  private watchPartial(ms: number): NodeJS.Timeout {
    return setTimeout(() => {
      this.partialTimer = undefined;
      if (this.partialSince === undefined || this.socket.destroyed) return;
      const left = this.partialSince + this.partialFrameTimeoutMs - performance.now();
      if (left > 0) {
        this.partialTimer = this.watchPartial(left);
        return;
      }
      this.log.warn(
        { bytes: this.decoder.pending },
        "part of a frame unfinished too long; closing connection",
      );
      this.socket.destroy();
    }, ms);
  }

  /** Sends one frame in a single write. Returns false if the connection is already gone. */
  send(frame: SocketFrame): boolean {
    if (this.socket.destroyed) return false;
    this.tap?.(frame);
    if (!this.socket.write(encodeFrame(frame)) && this.serving && !this.writeBlocked) {
      this.writeBlocked = true;
      this.updateFlow();
    }
    return true;
  }

  /** Sends what is queued, then closes. */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export interface ServerOptions extends ConnectionOptions {
  host: string;
  port: number;
  onConnection: (conn: FramedConnection) => void;
  /** Connections served at once; more are closed on arrival, with a log line. */
  maxConnections?: number;
}

export const DEFAULT_MAX_CONNECTIONS = 64;

/** A listening endpoint that tracks its connections so it can close all of them. */
export class FramedServer {
  readonly connections = new Set<FramedConnection>();

  private constructor(
    private readonly server: net.Server,
    readonly address: Endpoint,
  ) {}

  static listen(opts: ServerOptions): Promise<FramedServer> {
    return new Promise((resolve, reject) => {
      // Accepted paused: reading starts once `adopt` has moved the connection to an onread socket.
      const server = net.createServer({ pauseOnConnect: true });
      server.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
      server.on("drop", (d) =>
        opts.log?.warn(
          { peer: d && formatEndpoint({ host: d.remoteAddress ?? "?", port: d.remotePort ?? 0 }) },
          `connection refused: ${server.maxConnections} connections already open`,
        ),
      );
      const onError = (err: Error) => reject(err);
      server.once("error", onError);
      server.listen({ host: opts.host, port: opts.port }, () => {
        server.off("error", onError);
        const addr = server.address() as net.AddressInfo;
        const fs = new FramedServer(server, { host: addr.address, port: addr.port });
        server.on("connection", (accepted) => {
          const conn = new FramedConnection(
            adopt(accepted, (chunk) => conn.receive(chunk)),
            { ...opts, serving: true },
          );
          fs.connections.add(conn);
          conn.once("close", () => fs.connections.delete(conn));
          opts.onConnection(conn);
        });
        resolve(fs);
      });
    });
  }

  /** Stops listening and drops every connection. */
  close(): Promise<void> {
    for (const c of this.connections) c.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export class TimeoutError extends Error {
  override readonly name = "TimeoutError";
}

export class ConnectionClosedError extends Error {
  override readonly name = "ConnectionClosedError";
}

export interface ClientOptions extends ConnectionOptions {
  /** Per-request timeout; past it the connection is closed, as Linux aborts a mailbox. */
  timeoutMs?: number;
  connectTimeoutMs?: number;
}

/**
 * The client side: strict request/response over one connection. Requests queue, one in flight at
 * a time; a timeout or an unexpected frame closes the connection and fails what is pending.
 */
interface PendingRequest {
  frame: SocketFrame;
  timeoutMs: number;
  /** Makes the request's result of its answer, in the data handler; what it throws rejects the request. */
  accept: ((f: SocketFrame) => unknown) | undefined;
  resolve: (value: unknown) => void;
  reject: (e: Error) => void;
}

function settle(p: PendingRequest, f: SocketFrame): void {
  if (!p.accept) {
    p.resolve(f);
    return;
  }
  let value: unknown;
  try {
    value = p.accept(f);
  } catch (e) {
    p.reject(e as Error);
    return;
  }
  p.resolve(value);
}

/**
 * Where every socket of the process reads, through net's `onread`: libuv fills it and its
 * callback runs before any other read, so one buffer serves them all and each read's bytes are
 * copied out. That skips the Readable stream path (a buffer allocated per read, a tick per read,
 * "data" events): ~5 of a client's ~30 us of CPU per round trip, and ~6 of a device's ~27 per DOE
 * exchange. Made on first use; held here for as long as sockets may read into it.
 */
let readBuffer: Buffer | undefined;

/** net's `onread`, reading into readBuffer and handing `receive` a copy of each read's bytes. */
function onread(receive: (chunk: Buffer) => void): net.OnReadOpts {
  readBuffer ??= Buffer.allocUnsafe(64 * 1024);
  const buffer = readBuffer;
  return {
    buffer,
    callback: (n) => {
      const chunk = Buffer.allocUnsafe(n);
      buffer.copy(chunk, 0, 0, n);
      receive(chunk);
      return true;
    },
  };
}

/**
 * An accepted connection, reading through `onread` as a client does: Node takes `onread` only in
 * the options of a socket it makes, so the handle of a connection accepted paused moves into one
 * made with it (`handle`, the option Node itself moves handles between sockets with). The accepted
 * socket stays, without its handle, until the new one closes: it is what the server counts
 * against maxConnections.
 */
function adopt(accepted: net.Socket, receive: (chunk: Buffer) => void): net.Socket {
  const internal = accepted as unknown as { _handle: unknown };
  const handle = internal._handle;
  internal._handle = null;
  const socket = new net.Socket({ handle, onread: onread(receive) } as net.SocketConstructorOpts);
  socket.once("close", () => accepted.destroy());
  return socket;
}

export class FramedClient {
  /** Requests in order; the head is on the wire once `sent` is set. */
  private readonly queue: PendingRequest[] = [];
  private sent = false;
  /** When the request on the wire times out; one timer serves every request (see arm()). */
  private deadline = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0;
  readonly timeoutMs: number;

  private constructor(
    readonly conn: FramedConnection,
    opts: ClientOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? 1000;
    conn.on("frame", (f) => {
      const head = this.sent ? this.queue.shift() : undefined;
      this.sent = false;
      if (!head) {
        conn.destroy(); // a frame nobody asked for: the stream is out of step
        return;
      }
      settle(head, f);
      this.next();
    });
    conn.once("close", () => {
      clearTimeout(this.timer);
      const error = new ConnectionClosedError(`connection to ${conn.peer} closed`);
      for (const p of this.queue.splice(0)) p.reject(error);
    });
  }

  static connect(endpoint: Endpoint, opts: ClientOptions = {}): Promise<FramedClient> {
    return new Promise((resolve, reject) => {
      let conn: FramedConnection | undefined;
      const socket = net.connect({
        host: endpoint.host,
        port: endpoint.port,
        // Reading starts after "connect" has created `conn`; pausing is updateFlow's.
        onread: onread((chunk) => conn!.receive(chunk)),
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TimeoutError(`connecting to ${formatEndpoint(endpoint)} timed out`));
      }, opts.connectTimeoutMs ?? 5000);
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot connect to ${formatEndpoint(endpoint)}: ${err.message}`));
      });
      socket.once("connect", () => {
        clearTimeout(timer);
        conn = new FramedConnection(socket, opts);
        resolve(new FramedClient(conn, opts));
      });
    });
  }

  get closed(): boolean {
    return this.conn.closed;
  }

  /**
   * Sends a frame and resolves with the next frame received, or with what `accept` makes of it: it
   * runs as the answer is read, so checking an answer costs no second promise. Requests queue, one
   * on the wire at a time.
   */
  request(frame: SocketFrame, timeoutMs?: number): Promise<SocketFrame>;
  request<T>(frame: SocketFrame, timeoutMs: number, accept: (f: SocketFrame) => T): Promise<T>;
  request(
    frame: SocketFrame,
    timeoutMs = this.timeoutMs,
    accept?: (f: SocketFrame) => unknown,
  ): Promise<unknown> {
    if (this.conn.closed) {
      return Promise.reject(new ConnectionClosedError(`connection to ${this.conn.peer} is closed`));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ frame, timeoutMs, accept, resolve, reject });
      if (!this.sent) this.next();
    });
  }

  /** Sends a frame that gets no answer frame (or whose answer is not awaited). */
  post(frame: SocketFrame): void {
    this.conn.send(frame);
  }

  private next(): void {
    const head = this.queue[0];
    if (!head) return;
    this.sent = true;
    const now = performance.now();
    this.deadline = now + head.timeoutMs;
    this.arm(now);
    this.conn.send(head.frame);
  }

  /**
   * Keeps one timer for the request on the wire's deadline: it is created only when none is pending
   * and, when it fires early (its request was answered and another sent since), re-arms for what is
   * left. A timer per request would cost more than the rest of an exchange.
   */
  private arm(now: number): void {
    if (this.timer) {
      if (this.deadline >= this.timerDue) return;
      clearTimeout(this.timer); // this request's timeout is shorter than the pending timer's
    }
    this.timerDue = this.deadline;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.sent) return;
      const at = performance.now();
      if (this.deadline > at) return this.arm(at);
      const head = this.queue[0]!;
      this.conn.destroy();
      head.reject(new TimeoutError(`no response from ${this.conn.peer} within ${head.timeoutMs} ms`));
    }, this.deadline - now);
    this.timer.unref();
  }

  close(): void {
    this.conn.destroy();
  }
}
