/**
 * DSP0274 GET_MEASUREMENTS from the requester side: spdm-emu's measurement loop, every MEASUREMENTS
 * checked (blocks, specification, RequesterContext echo, the signature over L1), and the
 * MeasurementSummaryHash of CHALLENGE_AUTH or a session handshake recomputed from the blocks.
 */
import {
  DmtfMeasurementType,
  MeasurementOperation,
  MeasurementSummaryHashType,
  NONCE_SIZE,
  nameOf,
  REQUESTER_CONTEXT_SIZE,
  ResponderCapability,
  SpdmErrorCode,
} from "../../protocol/spdm/codes.js";
import { decodeMeasurementRecord, type MeasurementBlock } from "../../protocol/spdm/measurements.js";
import { hex } from "../bits.js";
import { hash } from "../crypto/suites.js";
import { expectResponse, fail, type SpdmRequester, withoutSignature } from "./requester.js";
import type { MeasurementMode } from "./requester-options.js";

export interface MeasurementSummary {
  index: number;
  /** DMTF value type name, e.g. "ImmutableRom", or the number for other specifications/types. */
  type: string;
  /** "digest" or "raw" (raw bit stream). */
  form: "digest" | "raw";
  value: string;
}

/** What getMeasurements() read, or why it read nothing. */
export type MeasurementsResult =
  | { mode: MeasurementMode; signed: boolean; blocks: MeasurementSummary[]; unsignedReason?: string }
  | { mode: "NONE"; reason: string };

/**
 * spdm-emu's measurement loop (spdm_requester_measurement.c). ONE_BY_ONE: count; scan indices
 * 1..0xFE (absent ones answer InvalidRequest) asking for a signature on the last one expected;
 * read the found indices again — the signature flag stays set, so each is signed on its own and
 * no ERROR between them resets L1. ALL: count, then all blocks in one signed response.
 */
export async function getMeasurements(r: SpdmRequester): Promise<MeasurementsResult> {
  const cap = r.measCap();
  const { slotId, measurementMode } = r.options;
  if (cap === 0) return { mode: "NONE", reason: "the responder has no MEAS_CAP" };
  // Signatures need the slot's leaf key: without GET_CERTIFICATE (e.g. a PSK-only run) ask for none.
  const haveKey = r.peerKey(slotId) !== undefined;
  const signed = cap === ResponderCapability.MEAS_CAP_SIG && haveKey;
  const unsignedReason =
    cap !== ResponderCapability.MEAS_CAP_SIG
      ? "the responder has MEAS_CAP_NO_SIG"
      : haveKey
        ? undefined
        : `no certificate chain for slot ${slotId} to verify signatures with`;
  const count = (await measure(r, MeasurementOperation.TotalNumber, false))!.message.totalMeasurementIndices;
  let records: Buffer[];
  if (measurementMode === "ALL") {
    const all = (await measure(r, MeasurementOperation.All, signed))!;
    if (all.message.numberOfBlocks !== count)
      fail(
        "measurements",
        `MEASUREMENTS holds ${all.message.numberOfBlocks} blocks, the responder counted ${count}`,
      );
    records = [all.message.measurementRecord];
  } else {
    const found: number[] = [];
    let sign = false;
    for (let index = 1; index < MeasurementOperation.All && found.length < count; index++) {
      if (found.length === count - 1) sign = signed;
      if (await measure(r, index, sign, true)) found.push(index);
    }
    if (found.length !== count)
      fail(
        "measurements",
        `the responder counted ${count} measurement indices, indices 1–254 hold ${found.length}`,
      );
    records = [];
    for (const index of found) records.push((await measure(r, index, sign))!.message.measurementRecord);
  }
  const record = Buffer.concat(records);
  const blocks = decodeMeasurementRecord(record);
  r.lastRecord = record;
  // CHALLENGE_AUTH's summary hash is about the connection; a session checks its own.
  if (!r.channel) {
    const match = summaryHashMatches(r, r.summaryHash, r.options.measurementSummaryHashType);
    if (match === false)
      fail(
        "measurements",
        "CHALLENGE_AUTH MeasurementSummaryHash is not the hash of the measurement blocks MEASUREMENTS returned",
      );
    r.summaryHashChecked = match === true;
  }
  const summary = { mode: measurementMode, signed, blocks: blocks.map(describeBlock) };
  return unsignedReason ? { ...summary, unsignedReason } : summary;
}

/** One GET_MEASUREMENTS; with `absentOk`, ERROR InvalidRequest (no such index) gives undefined. */
async function measure(r: SpdmRequester, operation: number, sign: boolean, absentOk = false) {
  const v = r.version;
  const { slotId } = r.options;
  const nonce = sign ? r.random(NONCE_SIZE) : undefined;
  const requesterContext = v >= 0x13 ? r.random(REQUESTER_CONTEXT_SIZE) : undefined;
  const reply = await r.exchange(
    {
      code: "GET_MEASUREMENTS",
      version: v,
      attributes: sign ? 1 : 0,
      operation,
      nonce,
      slotIdParam: sign && v >= 0x11 ? slotId & 0xf : undefined,
      requesterContext,
    },
    { measurementSignatureRequested: sign },
  );
  if (absentOk && reply.message.code === "ERROR" && reply.message.errorCode === SpdmErrorCode.InvalidRequest)
    return undefined;
  const m = expectResponse(reply, "MEASUREMENTS");
  const what = `MEASUREMENTS for operation ${hex(operation)}`;
  const bad = (reason: string) => fail("measurements", `${what} ${reason}`);
  const blocks = decodeMeasurementRecord(m.measurementRecord);
  if (operation === MeasurementOperation.TotalNumber) {
    if (m.numberOfBlocks !== 0) bad(`holds ${m.numberOfBlocks} blocks, a count holds none`);
  } else if (operation === MeasurementOperation.All) {
    if (m.numberOfBlocks === 0 || m.numberOfBlocks === 0xff) bad(`holds ${m.numberOfBlocks} blocks`);
  } else if (blocks.length !== 1 || blocks[0]!.index !== operation) {
    bad(`holds blocks ${blocks.map((b) => b.index).join(",") || "none"}, not block ${operation}`);
  }
  const selectedSpec = r.alg!.measurementSpecificationSel;
  for (const b of blocks) {
    if (b.measurementSpecification !== selectedSpec)
      bad(
        `block ${b.index} uses measurement specification ${hex(b.measurementSpecification)}, not the selected ${hex(selectedSpec)}`,
      );
  }
  r.checkOpaque("MEASUREMENTS", m.opaqueData);
  if (requesterContext && !m.requesterContext?.equals(requesterContext))
    bad("does not echo our RequesterContext");
  const l1 = r.transcript.measurements(
    v,
    reply.requestBytes,
    withoutSignature(reply.bytes, m.signature),
    sign,
    r.channel?.measurementLog,
  );
  if (sign) {
    if (v >= 0x11 && (m.slotIdParam & 0xf) !== (slotId & 0xf))
      bad(`is signed for slot ${m.slotIdParam & 0xf}`);
    r.verifySignature("MEASUREMENTS", "L1", r.peerKey(slotId)!.leafKey, l1!, m.signature);
  }
  return { message: m, blocks };
}

/**
 * Whether a MeasurementSummaryHash of type ALL is the Hash of every measurement block in index order
 * (DSP0274 CHALLENGE_AUTH, KEY_EXCHANGE_RSP), over the blocks the last getMeasurements() read.
 * Undefined when it cannot be told: no hash, type TCB (which blocks count is device policy), or no
 * blocks read yet.
 */
export function summaryHashMatches(
  r: SpdmRequester,
  summaryHash: Buffer | undefined,
  type: number,
): boolean | undefined {
  if (!summaryHash?.length || type !== MeasurementSummaryHashType.All || !r.lastRecord?.length)
    return undefined;
  return hash(r.suite!.hash, r.lastRecord).equals(summaryHash);
}

function describeBlock(b: MeasurementBlock): MeasurementSummary {
  if (!b.dmtf)
    return {
      index: b.index,
      type: `spec ${hex(b.measurementSpecification)}`,
      form: "raw",
      value: b.measurement.toString("hex"),
    };
  return {
    index: b.index,
    type: nameOf(DmtfMeasurementType, b.dmtf.type) ?? String(b.dmtf.type),
    form: b.dmtf.rawBitStream ? "raw" : "digest",
    value: b.dmtf.value.toString("hex"),
  };
}
