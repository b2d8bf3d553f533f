/**
 * The requester's transport over a DOE mailbox endpoint: SPDM messages as CMA/SPDM data objects
 * (PCI-SIG type 1), the spdm-emu socket session around them (TEST, discovery, SHUTDOWN/CONTINUE),
 * and `runRequester`, which does one whole requester run the way spdm_requester_emu does.
 */
import { DoeType, PCI_SIG_VENDOR_ID, protocolId } from "../../protocol/doe.js";
import { DoeClient, DoeError } from "../host/doe-client.js";
import { type Endpoint, formatEndpoint } from "../net/framed.js";
import {
  type RequesterSummary,
  SpdmRequester,
  type SpdmRequesterOptions,
  type SpdmTransport,
} from "./requester.js";

export const CMA = { vendorId: PCI_SIG_VENDOR_ID, type: DoeType.CMA_SPDM } as const;

/** SPDM over the mailbox's CMA/SPDM protocol; the response payload keeps its 0–3 bytes of DOE padding. */
export function cmaTransport(doe: DoeClient): SpdmTransport {
  return {
    async send(request) {
      return (await doe.exchange({ ...CMA, payload: request })).payload;
    },
  };
}

/** How a run ends, as spdm-emu's --exe_mode: SHUTDOWN stops the responder, CONTINUE keeps it for the next requester. */
export type ExeMode = "SHUTDOWN" | "CONTINUE";

export interface RunRequesterOptions extends SpdmRequesterOptions {
  /** Per-request timeout (ms), as DoeClient's. */
  timeoutMs?: number;
  exeMode?: ExeMode;
}

/**
 * Connect (TEST, discovery), check the mailbox lists CMA/SPDM, run the requester, then end with
 * SHUTDOWN or CONTINUE — also after a failure, so the responder is not left waiting.
 */
export async function runRequester(
  endpoint: Endpoint,
  opts: RunRequesterOptions = {},
): Promise<RequesterSummary> {
  let transport: SpdmTransport | undefined;
  // Built before connecting, so that bad options fail before anything is sent.
  const requester = new SpdmRequester({ send: (request) => transport!.send(request) }, opts);
  const doe = await DoeClient.connect(endpoint, { timeoutMs: opts.timeoutMs ?? 1000 });
  transport = cmaTransport(doe);
  let summary: RequesterSummary;
  try {
    if (!doe.supports(CMA))
      throw new DoeError(
        `${formatEndpoint(endpoint)} does not list CMA/SPDM (${protocolId(CMA)}) in DOE discovery`,
      );
    summary = await requester.run();
  } catch (e) {
    await doe.end(opts.exeMode).catch(() => doe.close());
    throw e;
  }
  await doe.end(opts.exeMode);
  return summary;
}
