/**
 * Measurements (DSP0274 GET_MEASUREMENTS / MEASUREMENTS): the device's measurement blocks, signed
 * on request, and the measurement summary hash that CHALLENGE_AUTH, KEY_EXCHANGE_RSP and
 * PSK_EXCHANGE_RSP carry.
 */
import { randomBytes } from "node:crypto";
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  DMTF_VALUE_TYPE_RAW_BIT_STREAM,
  DmtfMeasurementType,
  MeasurementAttribute,
  MeasurementHashAlgo,
  MeasurementOperation,
  MeasurementSummaryHashType,
  NONCE_SIZE,
  ResponderCapability,
  SpdmVersion,
} from "../../protocol/spdm/codes.js";
import {
  dmtfMeasurementBlock,
  encodeMeasurementRecord,
  type MeasurementBlock,
} from "../../protocol/spdm/measurements.js";
import type { GetMeasurements } from "../../protocol/spdm/messages.js";
import { type HashAlgo, hash } from "../crypto/suites.js";
import { slotOfParam } from "./public-key.js";
import { check, EMPTY, type Exchange, type ResponderContext } from "./responder-context.js";
import type { MeasurementSource, ResponderConfig } from "./responder-settings.js";

export type MeasurementContext = Pick<ResponderContext, "config" | "connection" | "transcript">;

const MEASUREMENT_HASH: Readonly<Record<number, HashAlgo>> = {
  [MeasurementHashAlgo.SHA_256]: "SHA_256",
  [MeasurementHashAlgo.SHA_384]: "SHA_384",
  [MeasurementHashAlgo.SHA_512]: "SHA_512",
  [MeasurementHashAlgo.SHA3_256]: "SHA3_256",
  [MeasurementHashAlgo.SHA3_384]: "SHA3_384",
  [MeasurementHashAlgo.SHA3_512]: "SHA3_512",
};

/** Measurement hash: the negotiated base hash when configured, else our first choice. */
export function measurementHashFor(config: ResponderConfig, base: HashAlgo | undefined): number {
  const prefs = config.measurementHash;
  return prefs.find((b) => MEASUREMENT_HASH[b] === base) ?? prefs[0] ?? 0;
}

/**
 * measurementBlocks() by the device's measurement sources (fixed at start-up), then by measurement
 * hash and raw request: DMTF's requester asks for each index 1-254 in turn, and hashing every value
 * again for each of those requests was most of the device's CPU in its flows.
 */
const blockCache = new WeakMap<readonly MeasurementSource[], Map<string, readonly MeasurementBlock[]>>();

/**
 * The measurement blocks: digests of the values with the measurement hash, unless raw. A
 * hash-extended measurement (1.3) is always a digest, Hash(0…0 ‖ Hash(value)): its value extended
 * once into a zero digest; without a measurement hash (raw bit streams only) it is left out, as
 * libspdm's sample device does.
 */
function measurementBlocks(
  c: Pick<MeasurementContext, "config" | "connection">,
  rawRequested: boolean,
): readonly MeasurementBlock[] {
  const alg = MEASUREMENT_HASH[c.connection.negotiated.measurementHash]; // none when raw bit streams only
  const sources = c.config.measurements;
  let byKind = blockCache.get(sources);
  if (!byKind) {
    byKind = new Map();
    blockCache.set(sources, byKind);
  }
  const kind = `${alg}/${rawRequested}`;
  let blocks = byKind.get(kind);
  if (blocks) return blocks;
  const extend = DmtfMeasurementType.HashExtend;
  blocks = sources
    .filter(({ type }) => type !== extend || alg)
    .map(({ index, type, value, raw }) =>
      alg && type === extend
        ? dmtfMeasurementBlock(index, type, hash(alg, Buffer.alloc(hash(alg).length), hash(alg, value)))
        : raw || rawRequested || !alg
          ? dmtfMeasurementBlock(index, type | DMTF_VALUE_TYPE_RAW_BIT_STREAM, value)
          : dmtfMeasurementBlock(index, type, hash(alg, value)),
    );
  byKind.set(kind, blocks);
  return blocks;
}

/**
 * Hash (base hash) of the concatenated measurement blocks: all, or the TCB ones, which are the
 * immutable-ROM blocks, as in libspdm's sample device.
 */
export function measurementSummary(
  c: Pick<MeasurementContext, "config" | "connection">,
  type: number,
): Buffer {
  const T = MeasurementSummaryHashType;
  check(type === T.None || type === T.Tcb || type === T.All);
  if (type === T.None) return EMPTY;
  const { measurementSpec, hash: h } = c.connection.negotiated;
  check(measurementSpec !== 0 && h !== undefined);
  const blocks = measurementBlocks(c, false).filter(
    (b) => type === T.All || b.dmtf?.type === DmtfMeasurementType.ImmutableRom,
  );
  return hash(h, encodeMeasurementRecord(blocks));
}

export function getMeasurements(
  c: MeasurementContext,
  m: GetMeasurements,
  request: Buffer,
  x: Exchange,
): Buffer {
  const { connection } = c;
  const { version, operation } = m;
  check(connection.negotiated.measurementSpec !== 0, "UnexpectedRequest");
  const signed = (m.attributes & MeasurementAttribute.SIGNATURE_REQUESTED) !== 0;
  // 1.0 has no SlotIDParam: slot 0 signs. 0xF names the public key (slot 0xFF) in public-key mode.
  const slotId = signed && version >= SpdmVersion.V1_1 ? slotOfParam(m.slotIdParam ?? 0) : 0;
  check(
    !signed ||
      ((connection.peer!.ours & ResponderCapability.MEAS_CAP_SIG) !== 0 &&
        connection.negotiated.slots.has(slotId)),
  );
  const rawRequested =
    version >= SpdmVersion.V1_2 && (m.attributes & MeasurementAttribute.RAW_BIT_STREAM_REQUESTED) !== 0;
  const all = measurementBlocks(c, rawRequested);
  const count = operation === MeasurementOperation.TotalNumber;
  const blocks = count
    ? []
    : operation === MeasurementOperation.All
      ? all
      : all.filter((b) => b.index === operation);
  check(count || blocks.length > 0);
  const unsigned = encodeSpdm({
    code: "MEASUREMENTS",
    version,
    totalMeasurementIndices: count ? all.length : 0,
    // Content-changed bits (1.2) stay 00: no change detection.
    slotIdParam: signed ? slotId & 0xf : 0,
    numberOfBlocks: blocks.length,
    measurementRecord: encodeMeasurementRecord(blocks),
    nonce: randomBytes(NONCE_SIZE),
    opaqueData: EMPTY,
    requesterContext: m.requesterContext,
    signature: EMPTY,
  });
  // Inside a session the M log is the session's (libspdm), so L1 = A ‖ that session's M.
  const l1 = c.transcript.measurements(version, request, unsigned, signed, x.session?.measurementLog);
  return l1 ? Buffer.concat([unsigned, connection.sign("MEASUREMENTS", slotId, l1)]) : unsigned;
}
