/**
 * The SPDM bouncer of one TDEV: a mailbox-wire endpoint that a requester such as DMTF
 * spdm_requester_emu talks to as if it were the device, while the objects go to the TDEV's
 * mailboxes (the host rules, docs/ARCHITECTURE.md):
 *   - TEST is answered here; DOE discovery (type 0) goes to the CMA mailbox;
 *   - CMA/SPDM (0001:01) goes to the CMA mailbox, secured CMA/SPDM (0001:02) to the secured one;
 *   - any other object is an invalid request; a type whose mailbox the TDEV lacks is a missing-mailbox
 *     error; a mailbox that fails or does not answer within the timeout is an upstream error.
 * Every error is answered with an empty NORMAL frame, which is also what a device sends for an
 * object its mailbox discards: the requester sees a failed receive at once, the connection stays
 * usable, nothing hangs. Each error is logged and counted.
 *
 * Each requester connection gets its own upstream connections, one per mailbox endpoint (CMA and
 * secured CMA share one when they are the same mailbox), so a device that keeps SPDM state per
 * connection sees each requester as it would directly. CONTINUE and SHUTDOWN end only the
 * requester's connection (echoed, as spdm-emu does) and its upstream connections: the device is
 * the host's, not the requester's, so SHUTDOWN is never forwarded.
 *
 * spdm-emu's OOB_ENCAP_KEY_UPDATE and OOB_ENCAP_ENDPOINT_INFO (which arm the device's next
 * encapsulated request, e.g. for `spdm_requester_emu --key_upd RSP`) go to the mailbox of the
 * requester's last forwarded object, where its SPDM connection lives, and are echoed once the device
 * has echoed them. Before any object there is no SPDM connection to act on: they are echoed here, as
 * spdm_responder_emu echoes one that arms nothing. A mailbox that fails or does not echo within the
 * timeout is an upstream error, answered with the echo, which is also what a device that arms
 * nothing sends.
 */
import { DoeType, decodeDoeHeader, PCI_SIG_VENDOR_ID, protocolId } from "../../protocol/doe.js";
import { DecodeError } from "../../protocol/errors.js";
import {
  commandName,
  encodeEncapKeyUpdate,
  SocketCommand,
  type SocketFrame,
  TransportType,
} from "../../protocol/socket.js";
import { type Logger, WarnLimiter } from "../log.js";
import type { PcapCapture } from "../net/capture.js";
import {
  type Endpoint,
  FramedClient,
  type FramedConnection,
  FramedServer,
  formatEndpoint,
} from "../net/framed.js";
import { serveSpdmEmu } from "../net/spdm-emu-server.js";

export interface BounceTargets {
  cma: Endpoint | undefined;
  secured: Endpoint | undefined;
}

export interface BounceStats {
  /** Objects forwarded and answered. */
  forwarded: number;
  /** OOB commands forwarded and echoed. */
  outOfBand: number;
  invalidRequest: number;
  missingMailbox: number;
  upstreamError: number;
}

export interface BouncerOptions {
  targets: BounceTargets;
  host: string;
  port?: number;
  /** How long a mailbox may take to answer one object. */
  timeoutMs: number;
  log: Logger;
  /** Called when a mailbox could not be reached or did not answer: the device may be gone. */
  onUpstreamError?: (reason: string) => void;
  /**
   * Records each requester connection (the leg a requester sees, what spdm-dump follows), named by
   * `captureLabel`; a device started with --pcap records the upstream leg itself.
   */
  capture?: PcapCapture;
  captureLabel?: string;
}

export type BounceError = "invalidRequest" | "missingMailbox" | "upstreamError";

const EMPTY = Buffer.alloc(0);

/** Where an object goes, or why it goes nowhere. */
function route(object: Buffer, targets: BounceTargets): Endpoint | BounceError {
  let vendorId: number;
  let type: number;
  try {
    ({ vendorId, type } = decodeDoeHeader(object));
  } catch (e) {
    if (e instanceof DecodeError) return "invalidRequest";
    throw e;
  }
  if (vendorId !== PCI_SIG_VENDOR_ID) return "invalidRequest";
  switch (type) {
    case DoeType.DISCOVERY:
    case DoeType.CMA_SPDM:
      return targets.cma ?? "missingMailbox";
    case DoeType.SECURED_CMA_SPDM:
      return targets.secured ?? "missingMailbox";
    default:
      return "invalidRequest";
  }
}

export class Bouncer {
  readonly stats: BounceStats = {
    forwarded: 0,
    outOfBand: 0,
    invalidRequest: 0,
    missingMailbox: 0,
    upstreamError: 0,
  };
  /** Bounce errors are mostly a requester's doing: their warnings are rate-limited (the stats count all). */
  private readonly failures = new WarnLimiter();

  private constructor(
    private readonly server: FramedServer,
    private readonly opts: BouncerOptions,
  ) {}

  static async start(opts: BouncerOptions): Promise<Bouncer> {
    let bouncer: Bouncer | undefined;
    const server = await FramedServer.listen({
      host: opts.host,
      port: opts.port ?? 0,
      log: opts.log,
      onConnection: (conn) => {
        if (bouncer) bouncer.serve(conn);
        else conn.destroy();
      },
    });
    bouncer = new Bouncer(server, opts);
    return bouncer;
  }

  get address(): Endpoint {
    return this.server.address;
  }

  /** Stops listening and drops every requester connection with its upstream connections. */
  close(): Promise<void> {
    return this.server.close();
  }

  private serve(conn: FramedConnection): void {
    const log = this.opts.log.child({ requester: conn.peer });
    const upstreams: Upstreams = { byKey: new Map(), last: undefined };
    const dropUpstreams = () => {
      for (const u of upstreams.byKey.values()) closeUpstream(u);
      upstreams.byKey.clear();
    };
    const broken = (e: unknown) => {
      log.error({ err: (e as Error).stack }, "bounce failed; closing connection");
      conn.destroy();
    };
    const outOfBand = (command: number, payload: Buffer, done: () => void) =>
      void this.outOfBand(command, payload, upstreams, log).then(() => done(), broken);
    log.debug("requester connected");
    this.opts.capture?.attach(conn, this.opts.captureLabel ?? "bounce");
    conn.once("close", () => {
      dropUpstreams();
      log.debug("requester disconnected");
    });
    serveSpdmEmu(conn, log, {
      normal: (payload, reply) => this.forward(payload, upstreams, log).then(reply, broken),
      // The requester's session ends; SHUTDOWN is not forwarded, so the device stays up.
      end: () => dropUpstreams(),
      // An empty session ID goes on as 0, which the device reads the same way.
      encapKeyUpdate: (sessionId, done) =>
        outOfBand(SocketCommand.OOB_ENCAP_KEY_UPDATE, encodeEncapKeyUpdate(sessionId), done),
      encapEndpointInfo: (done) => outOfBand(SocketCommand.OOB_ENCAP_ENDPOINT_INFO, EMPTY, done),
    });
  }

  /**
   * The response object to send back, or an empty payload for any error. With the mailbox's
   * connection up (every object but a connection's first), the object goes out as it came in and
   * the answer is checked as it is read: one promise per object, nothing decoded but the header.
   */
  private forward(object: Buffer, upstreams: Upstreams, log: Logger): Promise<Buffer> {
    const target = route(object, this.opts.targets);
    if (typeof target === "string")
      return Promise.resolve(this.fail(target, log, { object: describe(object) }));
    upstreams.last = target;
    const frame = { command: SocketCommand.NORMAL, transport: TransportType.PCI_DOE, payload: object };
    return this.relay(target, frame, this.answered, upstreams, log, "object forwarded");
  }

  /** An OOB command to the mailbox of the last object, or echoed here before any (see the top). */
  private outOfBand(command: number, payload: Buffer, upstreams: Upstreams, log: Logger): Promise<unknown> {
    const name = commandName(command);
    if (!upstreams.last) {
      log.debug({ command: name }, "no object forwarded yet: OOB command echoed here");
      return Promise.resolve();
    }
    const frame = { command, transport: TransportType.PCI_DOE, payload };
    // Only the echo will do: the request on the wire is this command, so no NORMAL answer is taken for it.
    const echoed = (rsp: SocketFrame) => {
      if (rsp.command !== command)
        throw new Error(`mailbox answered ${name} with ${commandName(rsp.command)}`);
      this.stats.outOfBand++;
      return EMPTY;
    };
    return this.relay(upstreams.last, frame, echoed, upstreams, log, `${name} forwarded`);
  }

  /**
   * Sends `frame` to the mailbox at `target` over the requester's upstream connection to it
   * (connecting first when there is none) and resolves with what `accept` makes of the answer, or
   * with an empty payload when the mailbox fails.
   */
  private relay(
    target: Endpoint,
    frame: SocketFrame,
    accept: (rsp: SocketFrame) => Buffer,
    upstreams: Upstreams,
    log: Logger,
    what: string,
  ): Promise<Buffer> {
    const key = endpointKey(target);
    const upstream = upstreams.byKey.get(key);
    const failed = (e: unknown) => this.upstreamFailed(key, e as Error, upstreams, log);
    const send = (client: FramedClient) => {
      log.debug({ mailbox: key }, what);
      return client.request(frame, this.opts.timeoutMs, accept);
    };
    if (upstream instanceof FramedClient && !upstream.closed) return send(upstream).catch(failed);
    // A connection the device has closed since (restart, stop) is replaced, not failed on.
    const connecting =
      upstream instanceof Promise
        ? upstream
        : FramedClient.connect(target, {
            timeoutMs: this.opts.timeoutMs,
            connectTimeoutMs: this.opts.timeoutMs,
          });
    if (upstream !== connecting) {
      upstreams.byKey.set(key, connecting);
      void connecting.then(
        (c) => {
          if (upstreams.byKey.get(key) === connecting) upstreams.byKey.set(key, c);
        },
        () => undefined,
      );
    }
    return connecting.then(send).catch(failed);
  }

  /** A mailbox's answer to a forwarded object: its payload, or an error for anything but NORMAL. */
  private readonly answered = (rsp: SocketFrame): Buffer => {
    if (rsp.command !== SocketCommand.NORMAL) throw new Error(`mailbox answered ${commandName(rsp.command)}`);
    this.stats.forwarded++;
    return rsp.payload;
  };

  /** The next object to this mailbox reconnects. */
  private upstreamFailed(key: string, e: Error, upstreams: Upstreams, log: Logger): Buffer {
    const failed = upstreams.byKey.get(key);
    upstreams.byKey.delete(key);
    if (failed) closeUpstream(failed);
    this.opts.onUpstreamError?.(`mailbox ${key}: ${e.message}`);
    return this.fail("upstreamError", log, { mailbox: key, err: e.message });
  }

  private fail(kind: BounceError, log: Logger, detail: object): Buffer {
    this.stats[kind]++;
    this.failures.warn(
      log,
      { error: kind, ...detail },
      "bounce error; answered with an empty NORMAL frame (an OOB command: its bare echo)",
    );
    return EMPTY;
  }
}

/** A requester connection's upstream side. */
interface Upstreams {
  /** Its connections, by mailbox endpoint: the connection once it is up, its promise while connecting. */
  byKey: Map<string, FramedClient | Promise<FramedClient>>;
  /** The mailbox of the last object forwarded: where the requester's SPDM connection lives. */
  last: Endpoint | undefined;
}

const closeUpstream = (u: FramedClient | Promise<FramedClient>) =>
  void Promise.resolve(u).then(
    (c) => c.close(),
    () => undefined,
  );

/** formatEndpoint, remembered per target: a bouncer routes to the same one or two endpoints every time. */
const endpointKeys = new WeakMap<Endpoint, string>();
function endpointKey(e: Endpoint): string {
  let key = endpointKeys.get(e);
  if (key === undefined) {
    key = formatEndpoint(e);
    endpointKeys.set(e, key);
  }
  return key;
}

function describe(object: Buffer): string {
  try {
    return protocolId(decodeDoeHeader(object));
  } catch {
    return `${object.length} bytes, not a DOE object`;
  }
}
