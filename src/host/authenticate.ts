/**
 * SPDM authentication of a TDEV through its CMA mailbox, as the TSM's connect step does it: the
 * SPDM requester (src/requester/run.ts) runs VCA, certificates, CHALLENGE and measurements over a
 * connection of the host's own to the mailbox endpoint, which ends with CONTINUE (never SHUTDOWN:
 * the device belongs to the host). Its result is what the registry keeps in the TDEV's `auth`.
 */
import { formatRoutingId } from "../../protocol/pci.js";
import { runRequester } from "../requester/run.js";
import type { AuthResult, Tdev } from "./registry.js";

export class AuthenticateError extends Error {
  override readonly name = "AuthenticateError";
}

export interface AuthenticateOptions {
  /** How long the mailbox may take to answer one message. */
  timeoutMs: number;
  /** DER of the root certificate the device's chain must end in; without it only the chain is checked. */
  trustRoot?: Uint8Array;
}

export async function authenticateTdev(tdev: Tdev, opts: AuthenticateOptions): Promise<AuthResult> {
  const endpoint = tdev.cma?.endpoint;
  if (!endpoint) throw new AuthenticateError(`TDEV ${formatRoutingId(tdev.rid)} has no CMA mailbox`);
  const s = await runRequester(endpoint, {
    timeoutMs: opts.timeoutMs,
    exeMode: "CONTINUE",
    trustRoot: opts.trustRoot,
  });
  return {
    version: s.version,
    algorithms: s.algorithms,
    leafCertDigest: s.certificateChain.leafDigest,
    leafSubject: s.certificateChain.leafSubject,
    trustAnchor: s.certificateChain.trustAnchor ?? null,
    measurements: s.measurements.mode === "NONE" ? [] : s.measurements.blocks,
    at: new Date().toISOString(),
  };
}
