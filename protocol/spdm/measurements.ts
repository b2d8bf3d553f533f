/**
 * The MEASUREMENTS record: a list of measurement blocks (DSP0274 GET_MEASUREMENTS, measurement
 * block format). Every block is Index u8 | MeasurementSpecification u8 | MeasurementSize u16 |
 * Measurement; for the DMTF specification the Measurement is ValueType u8 | ValueSize u16 | Value.
 */
import { DecodeError } from "../errors.js";
import { DMTF_VALUE_TYPE_RAW_BIT_STREAM, MeasurementSpecification } from "./codes.js";
import { Reader, Writer } from "./schema.js";

export interface DmtfMeasurementValue {
  /** The whole ValueType byte (bits 6:0 type, bit 7 raw bit stream). */
  valueType: number;
  /** ValueType bits 6:0 (DmtfMeasurementType). */
  type: number;
  /** ValueType bit 7: the value is a raw bit stream, not a digest. */
  rawBitStream: boolean;
  value: Buffer;
}

export interface MeasurementBlock {
  index: number;
  measurementSpecification: number;
  /** The Measurement field as sent; this is what the encoder writes. */
  measurement: Buffer;
  /** A parsed view of `measurement` when measurementSpecification is DMTF. */
  dmtf?: DmtfMeasurementValue;
}

export interface MeasurementRecordOptions {
  /** When given, the record must hold exactly this many blocks (MEASUREMENTS NumberOfBlocks). */
  numberOfBlocks?: number;
  /** When given, digest-form DMTF values must be this long (the MeasurementHashAlgo size). */
  measurementHashSize?: number;
}

function dmtfValue(measurement: Buffer, at: number, opts: MeasurementRecordOptions): DmtfMeasurementValue {
  if (measurement.length < 3) {
    throw new DecodeError(
      "measurement",
      at,
      `DMTF measurement needs 3 header bytes, MeasurementSize is ${measurement.length}`,
    );
  }
  const r = new Reader(measurement);
  const valueType = r.uint(1, "measurement.valueType");
  const size = r.uint(2, "measurement.valueSize");
  if (size !== r.remaining) {
    throw new DecodeError(
      "measurement.valueSize",
      at + 1,
      `${size} does not match MeasurementSize - 3 = ${r.remaining}`,
    );
  }
  const rawBitStream = (valueType & DMTF_VALUE_TYPE_RAW_BIT_STREAM) !== 0;
  const hashSize = opts.measurementHashSize;
  if (!rawBitStream && hashSize !== undefined && size !== hashSize) {
    throw new DecodeError(
      "measurement.value",
      at + 3,
      `digest of ${size} bytes, the measurement hash has ${hashSize}`,
    );
  }
  return { valueType, type: valueType & 0x7f, rawBitStream, value: r.take(size, "measurement.value") };
}

/** Splits a measurement record into blocks; offsets in errors are relative to the record. */
export function decodeMeasurementRecord(
  record: Uint8Array,
  opts: MeasurementRecordOptions = {},
): MeasurementBlock[] {
  const r = new Reader(Buffer.from(record.buffer, record.byteOffset, record.byteLength));
  const blocks: MeasurementBlock[] = [];
  while (r.remaining > 0) {
    if (opts.numberOfBlocks !== undefined && blocks.length === opts.numberOfBlocks) {
      throw new DecodeError(
        "measurementRecord",
        r.off,
        `${r.remaining} bytes after the ${opts.numberOfBlocks} blocks`,
      );
    }
    const index = r.uint(1, "block.index");
    const measurementSpecification = r.uint(1, "block.measurementSpecification");
    const size = r.uint(2, "block.measurementSize");
    const at = r.off;
    const measurement = r.take(size, "block.measurement");
    const block: MeasurementBlock = { index, measurementSpecification, measurement };
    if (measurementSpecification & MeasurementSpecification.DMTF)
      block.dmtf = dmtfValue(measurement, at, opts);
    blocks.push(block);
  }
  if (opts.numberOfBlocks !== undefined && blocks.length !== opts.numberOfBlocks) {
    throw new DecodeError(
      "numberOfBlocks",
      r.off,
      `record holds ${blocks.length} blocks, not ${opts.numberOfBlocks}`,
    );
  }
  return blocks;
}

export function encodeMeasurementRecord(blocks: readonly MeasurementBlock[]): Buffer {
  const w = new Writer();
  blocks.forEach((b, i) => {
    w.uint(b.index, 1, `blocks[${i}].index`);
    w.uint(b.measurementSpecification, 1, `blocks[${i}].measurementSpecification`);
    w.uint(b.measurement.length, 2, `blocks[${i}].measurementSize`);
    w.bytes(b.measurement);
  });
  return w.finish();
}

/** A DMTF-specification block; `valueType` includes bit 7 for raw bit streams. */
export function dmtfMeasurementBlock(index: number, valueType: number, value: Uint8Array): MeasurementBlock {
  const w = new Writer();
  w.uint(valueType, 1, "valueType");
  w.uint(value.length, 2, "valueSize");
  w.bytes(value);
  const rawBitStream = (valueType & DMTF_VALUE_TYPE_RAW_BIT_STREAM) !== 0;
  return {
    index,
    measurementSpecification: MeasurementSpecification.DMTF,
    measurement: w.finish(),
    dmtf: { valueType, type: valueType & 0x7f, rawBitStream, value: Buffer.from(value) },
  };
}
