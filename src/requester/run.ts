/**
 * The requester's transport over a DOE mailbox endpoint: SPDM messages as CMA/SPDM data objects
 * (PCI-SIG type 1), secured records as Secured CMA/SPDM objects (type 2) on the same mailbox, the
 * spdm-emu socket session around them (TEST, discovery, SHUTDOWN/CONTINUE), and `runRequester` /
 * `runSessionRequester`, which do one whole requester run the way spdm_requester_emu does
 * (connection.ts and session.ts sequence its steps).
 */
import { DoeType, PCI_SIG_VENDOR_ID, protocolId } from "../../protocol/doe.js";
import { DoeClient, type DoeClientOptions } from "../doe/client.js";
import { DoeError } from "../doe/discovery.js";
import { type Endpoint, formatEndpoint } from "../net/framed.js";
import { SpdmRequester, type SpdmTransport } from "../spdm/requester.js";
import type { SessionRequestOptions } from "../spdm/requester-handshake.js";
import type { SpdmRequesterOptions } from "../spdm/requester-options.js";
import type { AppOptions } from "./app.js";
import {
  authenticate,
  authenticateAll,
  type ConnectionSummary,
  type RequesterSummary,
} from "./connection.js";
import { runSession, type SessionSummary } from "./session.js";

export const CMA = { vendorId: PCI_SIG_VENDOR_ID, type: DoeType.CMA_SPDM } as const;
export const SECURED_CMA = { vendorId: PCI_SIG_VENDOR_ID, type: DoeType.SECURED_CMA_SPDM } as const;

/**
 * SPDM over the mailbox's CMA/SPDM protocol, secured records over Secured CMA/SPDM; response
 * payloads keep their 0–3 bytes of DOE padding.
 */
export function cmaTransport(doe: DoeClient): SpdmTransport {
  return {
    async send(request) {
      return (await doe.exchange({ ...CMA, payload: request })).payload;
    },
    async sendSecured(record) {
      return (await doe.exchange({ ...SECURED_CMA, payload: record })).payload;
    },
    requestEncapKeyUpdate: (sessionId) => doe.requestEncapKeyUpdate(sessionId),
    requestEncapEndpointInfo: () => doe.requestEncapEndpointInfo(),
  };
}

/** How a run ends, as spdm-emu's --exe_mode: SHUTDOWN stops the responder, CONTINUE keeps it for the next requester. */
export type ExeMode = "SHUTDOWN" | "CONTINUE";

export interface RunRequesterOptions extends SpdmRequesterOptions {
  /** Per-request timeout (ms), as DoeClient's. */
  timeoutMs?: number;
  exeMode?: ExeMode;
  capture?: DoeClientOptions["capture"];
}

/**
 * Connect (TEST, discovery) and check the mailbox lists CMA/SPDM (and Secured CMA/SPDM when
 * `secured`); the connection is the caller's to end. The host holds one this way for a session's lifetime.
 */
export async function connectRequester(
  endpoint: Endpoint,
  opts: RunRequesterOptions,
  secured: boolean,
): Promise<{ requester: SpdmRequester; doe: DoeClient }> {
  let transport: SpdmTransport | undefined;
  // Built before connecting, so that bad options fail before anything is sent.
  const requester = new SpdmRequester(
    {
      send: (request) => transport!.send(request),
      sendSecured: (record) => transport!.sendSecured!(record),
      requestEncapKeyUpdate: (sessionId) => transport!.requestEncapKeyUpdate!(sessionId),
      requestEncapEndpointInfo: () => transport!.requestEncapEndpointInfo!(),
    },
    opts,
  );
  const doe = await DoeClient.connect(endpoint, { timeoutMs: opts.timeoutMs ?? 1000, capture: opts.capture });
  transport = cmaTransport(doe);
  for (const p of secured ? [CMA, SECURED_CMA] : [CMA]) {
    if (!doe.supports(p)) {
      await doe.end(opts.exeMode).catch(() => doe.close());
      throw new DoeError(`${formatEndpoint(endpoint)} does not list ${protocolId(p)} in DOE discovery`);
    }
  }
  return { requester, doe };
}

/**
 * connectRequester, run `body` on the requester, then end with SHUTDOWN or CONTINUE — also after a
 * failure, so the responder is not left waiting.
 */
export async function withRequester<T>(
  endpoint: Endpoint,
  opts: RunRequesterOptions,
  secured: boolean,
  body: (requester: SpdmRequester) => Promise<T>,
): Promise<T> {
  const { requester, doe } = await connectRequester(endpoint, opts, secured);
  let result: T;
  try {
    result = await body(requester);
  } catch (e) {
    await doe.end(opts.exeMode).catch(() => doe.close());
    throw e;
  }
  await doe.end(opts.exeMode);
  return result;
}

/** One authentication run with every connection step (VCA, certificates, CHALLENGE, measurements). */
export function runRequester(endpoint: Endpoint, opts: RunRequesterOptions = {}): Promise<RequesterSummary> {
  return withRequester(endpoint, opts, false, authenticateAll);
}

/** The configured connection steps, then a secure session (runSession, with the APP step of `app`) on the same connection. */
export function runSessionRequester(
  endpoint: Endpoint,
  opts: RunRequesterOptions & { session: SessionRequestOptions; app?: AppOptions },
): Promise<{ connection: ConnectionSummary; session: SessionSummary }> {
  return withRequester(endpoint, opts, true, async (r) => {
    const connection = await authenticate(r);
    const session = await runSession(r, opts.session, opts.app);
    return { connection, session };
  });
}
