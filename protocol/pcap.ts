/**
 * Classic libpcap files (not pcapng) as DMTF spdm-emu writes them and spdm-dump reads them
 * (spdm-emu 85436d53 spdm_emu/spdm_emu_common/pcap.c, libspdm os_stub/include/industry_standard/pcap.h
 * and link_type_ex.h): a 24-byte global header, then per record a 16-byte header and the data. We
 * write little-endian with the microsecond magic; link type 292 (PCI_DOE) records hold one whole
 * DOE data object each, with no direction marker. The reader also takes big-endian and
 * nanosecond files, and stops at a record cut short (a writer killed mid-record).
 */
// Imported: Node 20's global Buffer is an accessor, paid on every use (a record per frame).
import { Buffer } from "node:buffer";
import { DecodeError, requireBytes } from "./errors.js";
import { hexDigits } from "./hex.js";

export const PCAP_MAGIC_USEC = 0xa1b2c3d4;
export const PCAP_MAGIC_NSEC = 0xa1b23c4d;
/** libspdm's own link types (link_type_ex.h); tcpdump defines 0..289. */
export const LinkType = { MCTP: 291, PCI_DOE: 292 } as const;
/** spdm-dump refuses a larger snaplen (and incl_len) than this. */
export const PCAP_MAX_SPDM_DUMP_SNAPLEN = 0x10000;
export const PCAP_GLOBAL_HEADER_BYTES = 24;
export const PCAP_RECORD_HEADER_BYTES = 16;

export interface PcapHeader {
  snaplen: number;
  linkType: number;
}

export interface PcapRecord {
  /** Capture time, microseconds since the Unix epoch (exact in a double until the year 2255). */
  timeUs: number;
  /** The captured bytes (at most snaplen). */
  data: Buffer;
  /** The object's real length; more than data.length when the record was truncated. */
  origLen: number;
}

export function encodePcapHeader(h: PcapHeader): Buffer {
  const b = Buffer.alloc(PCAP_GLOBAL_HEADER_BYTES);
  b.writeUInt32LE(PCAP_MAGIC_USEC, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  // thiszone and sigfigs stay 0, as spdm-emu writes them.
  b.writeUInt32LE(h.snaplen, 16);
  b.writeUInt32LE(h.linkType, 20);
  return b;
}

/** A record's 16-byte header: seconds, microseconds, incl_len (the data's length), orig_len. */
export function encodePcapRecordHeader(timeUs: number, inclLen: number, origLen: number): Buffer {
  const b = Buffer.allocUnsafe(PCAP_RECORD_HEADER_BYTES);
  b.writeUInt32LE(Math.floor(timeUs / 1e6), 0);
  b.writeUInt32LE(timeUs % 1e6, 4);
  b.writeUInt32LE(inclLen, 8);
  b.writeUInt32LE(origLen, 12);
  return b;
}

export function encodePcapRecord(r: PcapRecord): Buffer {
  return Buffer.concat([encodePcapRecordHeader(r.timeUs, r.data.length, r.origLen), r.data]);
}

export interface PcapFile {
  header: PcapHeader;
  records: PcapRecord[];
  /** Bytes after the last whole record: a record cut short, e.g. by a killed writer. */
  trailingBytes: number;
}

/** Reads a whole file; DecodeError for a bad global header, never for a short last record. */
export function decodePcap(input: Uint8Array): PcapFile {
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  requireBytes(buf, 0, PCAP_GLOBAL_HEADER_BYTES, "pcap.header");
  const magicLe = buf.readUInt32LE(0);
  const magicBe = buf.readUInt32BE(0);
  const le = magicLe === PCAP_MAGIC_USEC || magicLe === PCAP_MAGIC_NSEC;
  const magic = le ? magicLe : magicBe;
  if (magic !== PCAP_MAGIC_USEC && magic !== PCAP_MAGIC_NSEC)
    throw new DecodeError("pcap.magic", 0, `0x${hexDigits(magicLe, 8)} is not a pcap magic`);
  const u32 = (off: number) => (le ? buf.readUInt32LE(off) : buf.readUInt32BE(off));
  const fractionPerUs = magic === PCAP_MAGIC_NSEC ? 1000 : 1;
  const header = { snaplen: u32(16), linkType: u32(20) };
  const records: PcapRecord[] = [];
  let off = PCAP_GLOBAL_HEADER_BYTES;
  while (buf.length - off >= PCAP_RECORD_HEADER_BYTES) {
    const inclLen = u32(off + 8);
    const end = off + PCAP_RECORD_HEADER_BYTES + inclLen;
    if (end > buf.length) break;
    records.push({
      timeUs: u32(off) * 1e6 + Math.floor(u32(off + 4) / fractionPerUs),
      data: Buffer.from(buf.subarray(off + PCAP_RECORD_HEADER_BYTES, end)),
      origLen: u32(off + 12),
    });
    off = end;
  }
  return { header, records, trailingBytes: buf.length - off };
}
