/**
 * The TSM's connect step after authentication (PCIe r6.0 §6.33, the Linux PCI TSM "connect"): a
 * KEY_EXCHANGE session held on one connection to the TDEV's secured mailbox, IDE keys programmed
 * with IDE-KM for the function's first selective stream (QUERY, then KEY_PROG + K_SET_GO for RX/TX ×
 * PR/NPR/CPL), the stream given a Stream ID and enabled over the control wire, and its Status
 * required Secure (§7.9.26.5.3). Disconnect undoes it in reverse: K_SET_STOP, Enable cleared,
 * END_SESSION. The registry keeps the result as the TDEV's link.
 *
 * The held session carries one exchange at a time (TDISP for bind, HEARTBEAT, the teardown), in
 * the order asked: `withSession` queues them. While the negotiated heartbeat period is non-zero,
 * HEARTBEAT goes every half period, well inside the responder's "twice the period" rule. The link
 * is broken when a heartbeat fails, when the held connection closes (the device closed it, or a
 * request on it timed out), or when an exchange ends the session (a record that fails to
 * authenticate terminates it, DSP0277); the link reports that once to its `onBroken` listeners.
 */
import { Ide, IdeCap, IdeSel, IdeStreamCtl, IdeStreamState, IdeStreamSts } from "../../protocol/pci.js";
import { fieldOf, hex32, toField } from "../bits.js";
import type { DoeClient } from "../doe/client.js";
import type { Endpoint } from "../net/framed.js";
import { APP_DEFAULTS, ideKmStart, ideKmStop, keyTargets } from "../requester/app.js";
import { authenticate } from "../requester/connection.js";
import { connectRequester } from "../requester/run.js";
import type { SpdmRequester } from "../spdm/requester.js";
import { SESSION_DEFAULTS } from "../spdm/requester-handshake.js";
import { ideKmQuery } from "../spdm/requester-ide-km.js";
import { endSession, heartbeat, openSession } from "../spdm/requester-session.js";
import type { KeyLog, SecureSession } from "../spdm/session.js";
import { ControlClient } from "./control-client.js";

/** A connected TDEV: its held session and how to end it. */
export interface TdevLink {
  /** The session ID, e.g. "0xffff0001". */
  session: string;
  /**
   * Runs `f` on the held session once the exchanges asked for before it are done; refused with
   * LinkBusyError when MAX_WAITING are already waiting.
   */
  withSession<T>(f: (r: SpdmRequester, s: SecureSession) => Promise<T>): Promise<T>;
  /**
   * `listener` hears, once, why the link broke (a heartbeat failed, the connection closed, the
   * session ended); never after disconnect or close.
   */
  onBroken(listener: (reason: string) => void): void;
  /** K_SET_STOP ×6, Enable cleared, END_SESSION, connections closed (also when a step fails). */
  disconnect(): Promise<void>;
  /** Drops the connections and the heartbeat at once (the device is gone, or the link broke). */
  close(): void;
}

export interface ConnectOptions {
  /** The TDEV's secured mailbox endpoint; it must list CMA/SPDM as well. */
  mailbox: Endpoint;
  /** The device's control endpoint, for the IDE registers. */
  control: Endpoint;
  /** Config offset of the function's IDE extended capability. */
  ideOffset: number;
  timeoutMs: number;
  trustRoot?: Uint8Array;
  /** Where the held session's secret goes (`--keylog`). */
  keyLog?: KeyLog;
}

/** The Stream ID the host gives the stream it connects; the device's IDE-KM finds the stream by it. */
export const CONNECT_STREAM_ID = 1;

export class ConnectError extends Error {
  override readonly name = "ConnectError";
}

/** Exchanges that may wait for the held session; more are refused rather than piled up. */
export const MAX_WAITING = 16;

export class LinkBusyError extends Error {
  override readonly name = "LinkBusyError";
}

/** Runs jobs one at a time in the order given, with at most `limit` waiting to start. */
class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  constructor(private readonly limit: number) {}

  run<T>(f: () => Promise<T>, bounded = true): Promise<T> {
    if (bounded && this.waiting >= this.limit)
      return Promise.reject(new LinkBusyError(`${this.waiting} exchanges already wait for the session`));
    this.waiting++;
    const result = this.tail.then(() => {
      this.waiting--;
      return f();
    });
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** Config offsets of the first selective stream's Control and Status registers. */
async function firstSelectiveStream(
  control: ControlClient,
  rid: number,
  ideOffset: number,
): Promise<{ ctl: number; sts: number }> {
  const cap = await control.cfgRead(rid, ideOffset + Ide.CAP, 4);
  if (!(cap & IdeCap.SELECTIVE)) throw new ConnectError("the IDE capability has no selective stream");
  const linkStreams = cap & IdeCap.LINK ? fieldOf(cap, IdeCap.LINK_TC_NUM) + 1 : 0;
  const block = ideOffset + Ide.LINK_STREAM_0 + linkStreams * Ide.LINK_BLOCK_SIZE;
  return { ctl: block + IdeSel.CTL, sts: block + IdeSel.STS };
}

export async function connectTdev(rid: number, o: ConnectOptions): Promise<TdevLink> {
  const { requester: r, doe } = await connectRequester(
    o.mailbox,
    { timeoutMs: o.timeoutMs, trustRoot: o.trustRoot, exeMode: "CONTINUE", keyLog: o.keyLog },
    true,
  );
  const portIndex = APP_DEFAULTS.portIndex;
  const targets = keyTargets(portIndex, CONNECT_STREAM_ID);
  const idOnly = toField(CONNECT_STREAM_ID, IdeStreamCtl.ID) >>> 0;
  let session: SecureSession | undefined;
  let control: ControlClient | undefined;
  let stream: { ctl: number; sts: number } | undefined;
  let keysGo = false;

  /** Undoes what was done, in reverse; `strict` rethrows the first failure after closing everything. */
  const teardown = async (strict: boolean) => {
    let first: unknown;
    const attempt = async (f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        first ??= e;
      }
    };
    if (session && keysGo) await attempt(() => ideKmStop(r, session!, targets));
    if (control && stream) await attempt(() => control!.cfgWrite(rid, stream!.ctl, 4, idOnly));
    if (session) await attempt(() => endSession(r, session!, SESSION_DEFAULTS.endSessionAttributes));
    await attempt(() => doe.end("CONTINUE"));
    doe.close();
    control?.close();
    if (strict && first !== undefined) throw first;
  };

  try {
    await authenticate(r);
    session = (await openSession(r, { kind: "KEY_EX" })).session;
    control = await ControlClient.connect(o.control, {
      timeoutMs: o.timeoutMs,
      connectTimeoutMs: o.timeoutMs,
    });
    stream = await firstSelectiveStream(control, rid, o.ideOffset);
    // The Stream ID first: KEY_PROG names the stream by it.
    await control.cfgWrite(rid, stream.ctl, 4, idOnly);
    await ideKmQuery(r, session, portIndex);
    keysGo = true;
    await ideKmStart(r, session, targets);
    await control.cfgWrite(rid, stream.ctl, 4, (idOnly | IdeStreamCtl.ENABLE) >>> 0);
    const status = await control.cfgRead(rid, stream.sts, 4);
    if (fieldOf(status, IdeStreamSts.STATE) !== IdeStreamState.SECURE)
      throw new ConnectError(`IDE stream Status is ${hex32(status)}, not Secure`);
  } catch (e) {
    await teardown(false);
    throw e;
  }
  return holdLink(r, session, doe, teardown, () => control?.close());
}

/** The link over an established session: its queue, its heartbeat, and how it ends. */
function holdLink(
  r: SpdmRequester,
  s: SecureSession,
  doe: DoeClient,
  teardown: (strict: boolean) => Promise<void>,
  dropControl: () => void,
): TdevLink {
  const queue = new SerialQueue(MAX_WAITING);
  const listeners: ((reason: string) => void)[] = [];
  let ended = false;
  let beating = false;
  /** No more heartbeats or reports: the link is being ended on purpose. */
  const end = () => {
    ended = true;
    clearInterval(timer);
  };
  const broken = (reason: string) => {
    if (ended) return;
    end();
    for (const l of listeners) l(reason);
  };
  /** After a failed exchange: a session it ended, or a connection it lost, is a broken link. */
  const judge = (e: unknown) => {
    if (s.state === "ended" || doe.closed) broken(`${(e as Error).message}`);
  };
  doe.onClose(() => broken("the secured mailbox connection closed"));
  const beat = () => {
    // A heartbeat still queued is enough; the queue's other traffic keeps the session alive too.
    if (beating) return;
    beating = true;
    queue
      .run(() => heartbeat(r, s), false)
      .catch((e: unknown) => broken(`HEARTBEAT failed: ${(e as Error).message}`))
      .finally(() => (beating = false));
  };
  const timer = s.heartbeatPeriod > 0 ? setInterval(beat, (s.heartbeatPeriod * 1000) / 2) : undefined;
  return {
    session: hex32(s.sessionId),
    withSession: (f) =>
      queue.run(() =>
        f(r, s).catch((e: unknown) => {
          judge(e);
          throw e;
        }),
      ),
    onBroken: (listener) => void listeners.push(listener),
    disconnect: () => {
      end();
      // After what is already queued, whatever the queue's bound.
      return queue.run(() => teardown(true), false);
    },
    close: () => {
      end();
      s.end("TDEV link closed");
      doe.close();
      dropControl();
    },
  };
}
