/**
 * PCI-SIG vendor-defined messages (IDE-KM, TDISP, CXL IDE-KM) from the requester side: one protocol
 * message out as a VENDOR_DEFINED_REQUEST inside a session, the protocol message of the
 * VENDOR_DEFINED_RESPONSE back. requester-ide-km.ts, requester-cxl-ide-km.ts and requester-tdisp.ts
 * build on it.
 */
import { decodePciSigVdm, encodePciSigVdm, type PciSigProtocol } from "../../protocol/pcisig-vdm.js";
import { hex } from "../bits.js";
import { expectResponse, fail, type SpdmRequester, SpdmRequesterError } from "./requester.js";
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
  // Our requests use the 16-bit form (they are small); the answer must too (libspdm checks Param1 bit 7).
  if (response.large) fail("malformed", `${protocol} ${step}: answered in the 1.4 large form`);
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

/**
 * A protocol's error response (TDISP_ERROR, CXL TSP ERROR_RSP); `errorName` is its error code's
 * name (hex when unknown), for callers to act on.
 */
export class VdmErrorResponse extends SpdmRequesterError {
  constructor(
    readonly errorName: string,
    reason: string,
  ) {
    super("error-response", reason);
  }
}

/** How a protocol's answers read: its decoder, its version, and what an error response says. */
export interface Answers<M extends { code: string; version: number }> {
  protocol: PciSigProtocol;
  decode: (bytes: Buffer) => M;
  version: number;
  /** An error response's code name and text ("TDISP_ERROR InvalidInterface (ErrorData 0x0)"); undefined for any other. */
  error: (m: M) => { name: string; text: string } | undefined;
}

/**
 * `message` of `a.protocol` in session `s`; the answer must decode, be no error response, be
 * `expected` and of `a.version` (`step` names the request in failures).
 */
export async function ask<M extends { code: string; version: number }, N extends M["code"]>(
  r: SpdmRequester,
  s: SecureSession,
  a: Answers<M>,
  message: Buffer,
  step: string,
  expected: N,
): Promise<Extract<M, { code: N }>> {
  const where = `${a.protocol} ${step}`;
  const m = decodeOrFail(a.decode, await pciSigExchange(r, s, a.protocol, message, step), where);
  const error = a.error(m);
  if (error !== undefined) throw new VdmErrorResponse(error.name, `${where}: ${error.text}`);
  if (m.code !== expected) fail("unexpected-response", `${where}: answered with ${m.code}, not ${expected}`);
  if (m.version !== a.version)
    fail("unexpected-response", `${where}: ${expected} has version ${hex(m.version)}, not ${hex(a.version)}`);
  return m as Extract<M, { code: N }>;
}

/** One portion of a report and how many bytes are left after it. */
export interface Portion {
  portion: Buffer;
  remainderLength: number;
}

/**
 * A report fetched in portions of at most `portionBytes` until RemainderLength is 0, checked as
 * DMTF's requester checks TDISP's and CXL TSP's (spdm-emu 85436d53): no portion longer than asked,
 * a total of at most `maxBytes` that every answer agrees with. `step` names the request in failures.
 */
export async function readPortions(
  fetch: (offset: number, length: number) => Promise<Portion>,
  portionBytes: number,
  maxBytes: number,
  step: string,
): Promise<{ bytes: Buffer; portions: number }> {
  const parts: Buffer[] = [];
  let offset = 0;
  let total: number | undefined;
  for (;;) {
    const length = total === undefined ? portionBytes : Math.min(total - offset, portionBytes);
    const m = await fetch(offset, length);
    const p = m.portion.length;
    const where = `${step} offset ${offset}`;
    if (p > length) fail("malformed", `${where}: portion of ${p} bytes, we asked for ${length}`);
    total ??= p + m.remainderLength;
    if (total > maxBytes) fail("malformed", `${where}: report of ${total} bytes, more than ${maxBytes}`);
    if (offset + p + m.remainderLength !== total)
      fail("malformed", `${where}: ${p} bytes and ${m.remainderLength} remaining do not add up to ${total}`);
    if (p === 0 && m.remainderLength !== 0)
      fail("malformed", `${where}: empty portion, ${m.remainderLength} remaining`);
    parts.push(m.portion);
    offset += p;
    if (m.remainderLength === 0) return { bytes: Buffer.concat(parts), portions: parts.length };
  }
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
