/**
 * The TSM's connect step after authentication (PCIe r6.0 §6.33, the Linux PCI TSM "connect"): a
 * KEY_EXCHANGE session held on one connection to the TDEV's secured mailbox, IDE keys programmed
 * with IDE-KM for the function's first selective stream (QUERY, then KEY_PROG + K_SET_GO for RX/TX ×
 * PR/NPR/CPL), the stream given a Stream ID and enabled over the control wire, and its Status
 * required Secure (§7.9.26.5.3). Disconnect undoes it in reverse: K_SET_STOP, Enable cleared,
 * END_SESSION. The registry keeps the result as the TDEV's link.
 */
import { Ide, IdeCap, IdeSel, IdeStreamCtl, IdeStreamState, IdeStreamSts } from "../../protocol/pci.js";
import { fieldOf, hex32, toField } from "../bits.js";
import type { Endpoint } from "../net/framed.js";
import { APP_DEFAULTS, ideKmStart, ideKmStop, keyTargets } from "../requester/app.js";
import { authenticate } from "../requester/connection.js";
import { connectRequester } from "../requester/run.js";
import { SESSION_DEFAULTS } from "../spdm/requester-handshake.js";
import { ideKmQuery } from "../spdm/requester-ide-km.js";
import { endSession, openSession } from "../spdm/requester-session.js";
import type { KeyLog, SecureSession } from "../spdm/session.js";
import { ControlClient } from "./control-client.js";

/** A connected TDEV: its held session and how to end it. */
export interface TdevLink {
  /** The session ID, e.g. "0xffff0001". */
  session: string;
  /** K_SET_STOP ×6, Enable cleared, END_SESSION, connections closed (also when a step fails). */
  disconnect(): Promise<void>;
  /** Drops the connections at once (the device is gone). */
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
  const s = session;
  return {
    session: hex32(s.sessionId),
    disconnect: () => teardown(true),
    close: () => {
      s.end("TDEV removed");
      doe.close();
      control?.close();
    },
  };
}
