/**
 * PCI-SIG vendor-defined messages (IDE-KM, TDISP) from the requester side: one protocol message out
 * as a VENDOR_DEFINED_REQUEST inside a session, the protocol message of the VENDOR_DEFINED_RESPONSE
 * back. requester-ide-km.ts and requester-tdisp.ts build on it.
 */
import { decodePciSigVdm, encodePciSigVdm, type PciSigProtocol } from "../../protocol/pcisig-vdm.js";
import { expectResponse, fail, type SpdmRequester } from "./requester.js";
import type { SecureSession } from "./session.js";

/** `message` of `protocol` in session `s`; the answer must be the same protocol (`step` names the request in failures). */
export async function pciSigExchange(
  r: SpdmRequester,
  s: SecureSession,
  protocol: PciSigProtocol,
  message: Buffer,
  step: string,
): Promise<Buffer> {
  const reply = await r.inSession(s, () =>
    r.exchange({
      code: "VENDOR_DEFINED_REQUEST",
      version: r.connection.version,
      ...encodePciSigVdm({ protocol, message }),
    }),
  );
  const response = expectResponse(reply, "VENDOR_DEFINED_RESPONSE", `${protocol} ${step}`);
  let vdm: ReturnType<typeof decodePciSigVdm>;
  try {
    vdm = decodePciSigVdm(response);
  } catch (e) {
    fail("malformed", `${protocol} ${step}: ${(e as Error).message}`, e);
  }
  if (vdm.protocol !== protocol)
    fail("unexpected-response", `${protocol} ${step}: answered with protocol ${vdm.protocol}`);
  return vdm.message;
}

/** `decode(bytes)`, a DecodeError becoming a "malformed" failure that names the step. */
export function decodeOrFail<T>(decode: (b: Buffer) => T, bytes: Buffer, step: string): T {
  try {
    return decode(bytes);
  } catch (e) {
    fail("malformed", `${step}: ${(e as Error).message}`, e);
  }
}
