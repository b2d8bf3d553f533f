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
 */
import { DoeType, decodeDoeHeader, PCI_SIG_VENDOR_ID, protocolId } from "../../protocol/doe.js";
import { DecodeError } from "../../protocol/errors.js";
import { commandName, SocketCommand, TransportType } from "../../protocol/socket.js";
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
  readonly stats: BounceStats = { forwarded: 0, invalidRequest: 0, missingMailbox: 0, upstreamError: 0 };
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
    const upstreams = new Map<string, Promise<FramedClient>>();
    const dropUpstreams = () => {
      for (const u of upstreams.values())
        void u.then(
          (c) => c.close(),
          () => undefined,
        );
      upstreams.clear();
    };
    log.debug("requester connected");
    this.opts.capture?.attach(conn, this.opts.captureLabel ?? "bounce");
    conn.once("close", () => {
      dropUpstreams();
      log.debug("requester disconnected");
    });
    serveSpdmEmu(conn, log, {
      normal: (payload, reply) =>
        void this.forward(payload, upstreams, log).then(reply, (e) => {
          log.error({ err: (e as Error).stack }, "bounce failed; closing connection");
          conn.destroy();
        }),
      // The requester's session ends; SHUTDOWN is not forwarded, so the device stays up.
      end: () => dropUpstreams(),
    });
  }

  /** The response object to send back, or an empty payload for any error. */
  private async forward(
    object: Buffer,
    upstreams: Map<string, Promise<FramedClient>>,
    log: Logger,
  ): Promise<Buffer> {
    const target = route(object, this.opts.targets);
    if (typeof target === "string") return this.fail(target, log, { object: describe(object) });
    const key = formatEndpoint(target);
    try {
      let client = await upstreams.get(key)?.catch(() => undefined);
      // A connection the device has closed since (restart, stop) is replaced, not failed on.
      if (!client || client.closed) {
        const connecting = FramedClient.connect(target, {
          timeoutMs: this.opts.timeoutMs,
          connectTimeoutMs: this.opts.timeoutMs,
        });
        upstreams.set(key, connecting);
        client = await connecting;
      }
      const answer = client.request({
        command: SocketCommand.NORMAL,
        transport: TransportType.PCI_DOE,
        payload: object,
      });
      log.debug({ mailbox: key }, "object forwarded");
      const rsp = await answer;
      if (rsp.command !== SocketCommand.NORMAL)
        throw new Error(`mailbox answered ${commandName(rsp.command)}`);
      this.stats.forwarded++;
      return rsp.payload;
    } catch (e) {
      // The next object to this mailbox reconnects.
      const failed = upstreams.get(key);
      upstreams.delete(key);
      void failed?.then(
        (c) => c.close(),
        () => undefined,
      );
      this.opts.onUpstreamError?.(`mailbox ${key}: ${(e as Error).message}`);
      return this.fail("upstreamError", log, { mailbox: key, err: (e as Error).message });
    }
  }

  private fail(kind: BounceError, log: Logger, detail: object): Buffer {
    this.stats[kind]++;
    this.failures.warn(log, { error: kind, ...detail }, "bounce error; answered with an empty NORMAL frame");
    return EMPTY;
  }
}

function describe(object: Buffer): string {
  try {
    return protocolId(decodeDoeHeader(object));
  } catch {
    return `${object.length} bytes, not a DOE object`;
  }
}
