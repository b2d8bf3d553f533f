/**
 * PCI-SIG vendor-defined messages (IDE-KM, TDISP, CXL IDE-KM) from the requester side: one protocol
 * message out as a VENDOR_DEFINED_REQUEST inside a session, the protocol message of the
 * VENDOR_DEFINED_RESPONSE back. requester-ide-km.ts, requester-cxl-ide-km.ts and requester-tdisp.ts
 * build on it.
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

/** A protocol whose messages are objects named by an Object ID (PCIe and CXL IDE-KM). */
export interface ObjectProtocol<M extends { object: string }> {
  protocol: PciSigProtocol;
  encode(m: M): Buffer;
  decode(b: Buffer): M;
}

/** `request` in session `s`; the answer must decode as the `expected` object. */
export async function askObject<M extends { object: string }, N extends M["object"]>(
  r: SpdmRequester,
  s: SecureSession,
  p: ObjectProtocol<M>,
  request: M,
  expected: N,
  step: string,
): Promise<Extract<M, { object: N }>> {
  const bytes = await pciSigExchange(r, s, p.protocol, p.encode(request), step);
  const m = decodeOrFail(p.decode, bytes, `${p.protocol} ${step}`);
  if (m.object !== expected)
    fail("unexpected-response", `${p.protocol} ${step}: answered with ${m.object}, not ${expected}`);
  return m as Extract<M, { object: N }>;
}

/** QUERY for `portIndex` (PCIe and CXL IDE-KM); the QUERY_RESP must be for that port. */
export async function askQuery<M extends { object: string }>(
  r: SpdmRequester,
  s: SecureSession,
  p: ObjectProtocol<M>,
  portIndex: number,
): Promise<Extract<M, { object: "QUERY_RESP" }>> {
  const query = { object: "QUERY", portIndex } as unknown as M;
  const m = await askObject(r, s, p, query, "QUERY_RESP", "QUERY");
  const answered = (m as unknown as { portIndex: number }).portIndex;
  if (answered !== portIndex)
    fail(
      "unexpected-response",
      `${p.protocol} QUERY: QUERY_RESP is for port ${answered}, we asked for ${portIndex}`,
    );
  return m;
}
