/**
 * CXL IDE-KM from the requester side (codec protocol/cxl-ide-km.ts), one function per exchange, each
 * inside an established session: QUERY, GET_KEY, KEY_PROG, K_SET_GO, K_SET_STOP. Every answer must
 * echo the port (and StreamID and the whole KeySubStream of the key it names, as DMTF's requester
 * checks); a KP_ACK must have Status SUCCESS.
 */
import {
  type CxlIdeKmMessage,
  type CxlIdeKmMessageOf,
  type CxlIdeKmObjectName,
  type CxlKeyTarget,
  CxlKpAckStatus,
  decodeCxlIdeKm,
  encodeCxlIdeKm,
} from "../../protocol/cxl-ide-km.js";
import { nameOf } from "../../protocol/spdm/codes.js";
import { hex } from "../bits.js";
import { fail, type SpdmRequester } from "./requester.js";
import { askObject, askQuery, type ObjectProtocol } from "./requester-pcisig.js";
import type { SecureSession } from "./session.js";

const CXL_IDE_KM: ObjectProtocol<CxlIdeKmMessage> = {
  protocol: "CXL_IDE_KM",
  encode: encodeCxlIdeKm,
  decode: decodeCxlIdeKm,
};

/** A key's name for failures and summaries, e.g. "RX mode 1 sub-stream 8 stream 0 port 0". */
export function cxlKeyLabel(t: CxlKeyTarget): string {
  return `${t.direction ? "TX" : "RX"} mode ${t.mode} sub-stream ${t.subStream} stream ${t.streamId} port ${t.portIndex}`;
}

/** `request`, whose answer must be `expected` for the same key. */
async function askKeyed<N extends CxlIdeKmObjectName>(
  r: SpdmRequester,
  s: SecureSession,
  request: CxlIdeKmMessage & CxlKeyTarget,
  expected: N,
): Promise<CxlIdeKmMessageOf<N> & CxlKeyTarget> {
  const step = `${request.object} ${cxlKeyLabel(request)}`;
  const m = (await askObject(r, s, CXL_IDE_KM, request, expected, step)) as CxlIdeKmMessageOf<N> &
    CxlKeyTarget;
  if (cxlKeyLabel(m) !== cxlKeyLabel(request))
    fail("unexpected-response", `CXL_IDE_KM ${step}: the answer names ${cxlKeyLabel(m)}`);
  return m;
}

export const cxlIdeKmQuery = (
  r: SpdmRequester,
  s: SecureSession,
  portIndex: number,
): Promise<CxlIdeKmMessageOf<"QUERY_RESP">> => askQuery(r, s, CXL_IDE_KM, portIndex);

/** The key and IV the device generated for `target`. */
export async function cxlIdeKmGetKey(
  r: SpdmRequester,
  s: SecureSession,
  target: CxlKeyTarget,
): Promise<{ key: Buffer; iv: Buffer }> {
  const { key, iv } = await askKeyed(r, s, { object: "GET_KEY", ...target }, "GET_KEY_ACK");
  return { key, iv };
}

export async function cxlIdeKmKeyProg(
  r: SpdmRequester,
  s: SecureSession,
  target: CxlKeyTarget,
  key: Buffer,
  iv: Buffer,
): Promise<void> {
  const ack = await askKeyed(r, s, { object: "KEY_PROG", ...target, key, iv }, "KP_ACK");
  if (ack.status !== CxlKpAckStatus.SUCCESS)
    fail(
      "error-response",
      `CXL_IDE_KM KEY_PROG ${cxlKeyLabel(target)}: KP_ACK Status ${nameOf(CxlKpAckStatus, ack.status) ?? hex(ack.status)}`,
    );
}

/** K_SET_GO or K_SET_STOP; the answer is K_GOSTOP_ACK for the same key. */
export async function cxlIdeKmKSet(
  r: SpdmRequester,
  s: SecureSession,
  object: "K_SET_GO" | "K_SET_STOP",
  target: CxlKeyTarget,
): Promise<void> {
  await askKeyed(r, s, { object, ...target }, "K_GOSTOP_ACK");
}
