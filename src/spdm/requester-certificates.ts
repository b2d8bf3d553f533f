/**
 * DSP0274 GET_DIGESTS and GET_CERTIFICATE from the requester side: the provisioned slots and their
 * digests, each wanted slot's chain fetched portion by portion, then verified (digest, structure,
 * signatures, validity, trust root) before anything is signed over it.
 */
import { DecodeError } from "../../protocol/errors.js";
import {
  CERTIFICATE_LARGE_CHAIN,
  ResponderCapability,
  SpdmErrorCode,
  SpdmVersion,
} from "../../protocol/spdm/codes.js";
import { bitIndices, hex } from "../bits.js";
import { type CertChain, decodeCertChain } from "../crypto/cert-chain.js";
import { hash } from "../crypto/suites.js";
import { CertChainError, verifyCertChain } from "../crypto/verify-chain.js";
import { MAX_SMALL_CHAIN } from "./certificate-portion.js";
import { expectResponse, fail, type SlotChain, type SpdmRequester } from "./requester.js";

/** GET_DIGESTS; the slot and the extra slots must be provisioned. */
export async function getDigests(r: SpdmRequester): Promise<void> {
  const reply = await r.exchange({ code: "GET_DIGESTS", version: r.version });
  const d = expectResponse(reply, "DIGESTS");
  // Inside a session libspdm 1e16c60f keeps digests and certificates out of B, and D is the
  // first DIGESTS outside.
  if (!r.channel) {
    r.transcript.addCertificateExchange(reply.requestBytes, reply.bytes);
    r.transcript.noteDigests(reply.bytes);
  }
  r.digests.clear();
  for (const [i, slot] of bitIndices(d.provisionedSlotMask).entries()) r.digests.set(slot, d.digests[i]!);
  for (const slot of [r.options.slotId, ...r.options.extraSlots]) {
    if (!r.digests.has(slot))
      fail(
        "certificate",
        `slot ${slot} is not provisioned (DIGESTS slot mask ${hex(d.provisionedSlotMask)})`,
      );
  }
}

/**
 * Fetches a slot's chain portion by portion, RemainderLength-driven, then verifies it. A 1.4
 * responder answers ERROR DataTooLarge (the chain's size) when the chain exceeds the 16-bit fields:
 * with its LARGE_RESP_CAP the chain is then fetched again in the LargeCertChain form.
 */
export async function getCertificateChain(r: SpdmRequester, slot: number): Promise<SlotChain> {
  let bytes: Buffer | undefined;
  try {
    bytes = await fetchChain(r, slot, false);
  } catch (e) {
    // fetchChain throws ChainTooLarge only at 1.4 and later.
    if (!(e instanceof ChainTooLarge)) throw e;
    if ((r.rsp!.flags & ResponderCapability.LARGE_RESP_CAP) === 0)
      fail(
        "certificate",
        `slot ${slot} holds a ${e.size}-byte chain and the responder has no LARGE_RESP_CAP`,
      );
    bytes = await fetchChain(r, slot, true);
  }
  const entry = await verifyChain(r, slot, bytes);
  r.chains.set(slot, entry);
  return entry;
}

/** ERROR DataTooLarge to the 16-bit GET_CERTIFICATE: the chain's size. */
class ChainTooLarge extends Error {
  constructor(readonly size: number) {
    super(`certificate chain of ${size} bytes`);
  }
}

async function fetchChain(r: SpdmRequester, slot: number, large: boolean): Promise<Buffer> {
  const portionLength = r.options.certPortionLength;
  const limit = large ? 0xffff_ffff : MAX_SMALL_CHAIN;
  const portions: Buffer[] = [];
  let offset = 0;
  let total = 0;
  let remainder = 0;
  do {
    const length = offset === 0 ? portionLength : Math.min(portionLength, remainder);
    const reply = await r.exchange({
      code: "GET_CERTIFICATE",
      version: r.version,
      slotId: slot | (large ? CERTIFICATE_LARGE_CHAIN : 0),
      attributes: 0,
      ...(large ? { offset: 0, length: 0, largeOffset: offset, largeLength: length } : { offset, length }),
    });
    const e = reply.message;
    if (
      e.code === "ERROR" &&
      e.errorCode === SpdmErrorCode.DataTooLarge &&
      !large &&
      r.version >= SpdmVersion.V1_4
    )
      throw new ChainTooLarge(e.dataSize!);
    const c = expectResponse(reply, "CERTIFICATE");
    const at = `CERTIFICATE (slot ${slot}, offset ${offset})`;
    if ((c.slotId & 0xf) !== slot) fail("certificate", `${at} is for slot ${c.slotId & 0xf}`);
    // The form must be the one asked for (libspdm 1e16c60f checks Param1 bit 7 from 1.4 on).
    if (
      r.version >= SpdmVersion.V1_4 &&
      (c.slotId & CERTIFICATE_LARGE_CHAIN) !== (large ? CERTIFICATE_LARGE_CHAIN : 0)
    )
      fail("certificate", `${at} ${large ? "lacks" : "sets"} LargeCertChain`);
    if (c.certChain.length === 0 || c.certChain.length > length)
      fail("certificate", `${at} carries ${c.certChain.length} bytes, we asked for 1–${length}`);
    if (offset === 0) total = c.certChain.length + c.remainderLength;
    else if (offset + c.certChain.length + c.remainderLength !== total) {
      fail(
        "certificate",
        `${at}: PortionLength ${c.certChain.length} + RemainderLength ${c.remainderLength} does not add up to the ${total} bytes announced`,
      );
    }
    if (total > limit) fail("certificate", `${at} announces a ${total}-byte chain, more than ${limit}`);
    checkCertificateModel(r, slot, c.attributes);
    if (!r.channel) r.transcript.addCertificateExchange(reply.requestBytes, reply.bytes);
    portions.push(c.certChain);
    offset += c.certChain.length;
    remainder = c.remainderLength;
  } while (remainder !== 0);
  return Buffer.concat(portions);
}

/**
 * 1.3 CERTIFICATE Param2 certificate model: none without multi-key; ≤ generic, and not generic on
 * slot 0, with it (as libspdm 1e16c60f checks).
 */
function checkCertificateModel(r: SpdmRequester, slot: number, attributes: number): void {
  if (r.version < 0x13) return;
  const model = attributes & 0x7;
  const ok = r.ctx.multiKeyConn ? model <= 3 && !(slot === 0 && model === 3) : model === 0;
  if (!ok) fail("certificate", `CERTIFICATE (slot ${slot}) names certificate model ${model}`);
}

async function verifyChain(r: SpdmRequester, slot: number, bytes: Buffer): Promise<SlotChain> {
  const { hash: h, asym } = r.suite!;
  const what = `slot ${slot} certificate chain`;
  let chain: CertChain;
  try {
    chain = decodeCertChain(h, bytes);
  } catch (e) {
    if (e instanceof DecodeError) fail("certificate", `${what} is malformed: ${e.message}`, e);
    throw e;
  }
  if (!hash(h, bytes).equals(r.digests.get(slot)!))
    fail("certificate", `${what} does not match its DIGESTS digest (${h} of the ${bytes.length}-byte chain)`);
  try {
    await verifyCertChain(chain.certsDer, r.options.trustRoot, { asym, now: r.options.now?.() });
  } catch (e) {
    if (e instanceof CertChainError) fail("certificate", `${what}: ${e.message}`, e);
    throw e;
  }
  return { bytes, chain, leafKey: chain.certs.at(-1)!.publicKey };
}
