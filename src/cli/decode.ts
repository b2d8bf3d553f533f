/**
 * `doe-emu decode FILE.pcap`: one line per DOE object of a capture (ours or spdm-emu's, link type
 * PCI_DOE): time, direction, DOE protocol, SPDM message with its key fields, the IDE-KM, TDISP, CXL IDE-KM or CXL TSP
 * message a vendor-defined message carries; secured records decrypted with the sessions' secrets
 * from `--keylog` / `--psk` (src/spdm/observer.ts). `--json` prints one JSON object per line.
 */
import { readFileSync } from "node:fs";
import type { Argv } from "yargs";
import { protocolId } from "../../protocol/doe.js";
import { hexDigits } from "../../protocol/hex.js";
import { decodePcap, LinkType, type PcapRecord } from "../../protocol/pcap.js";
import { versionName } from "../../protocol/spdm/codes.js";
import { type KeyEntry, parseKeyLog } from "../spdm/keylog.js";
import { DoeObserver, type Fields, type ObservedObject } from "../spdm/observer.js";
import { run } from "./common.js";

interface DecodeArgs {
  file: string;
  keylog?: string;
  psk: string[];
  json: boolean;
}

/** Microseconds since the epoch as ISO 8601 with six fraction digits. */
export function isoMicroseconds(timeUs: number): string {
  const seconds = new Date(Math.floor(timeUs / 1000)).toISOString().slice(0, 19);
  return `${seconds}.${String(timeUs % 1e6).padStart(6, "0")}Z`;
}

const ARROW = { request: "REQ->RSP", response: "RSP->REQ" } as const;
const formatFields = (f: Fields) =>
  Object.entries(f)
    .map(([k, v]) => ` ${k}=${v}`)
    .join("");

export interface DecodedRecord extends ObservedObject {
  index: number;
  timeUs: number;
  /** Bytes in the record, and the object's real length (more when the snaplen cut it). */
  length: number;
  origLen: number;
}

/** Every record of a capture through one observer. */
export function decodeRecords(records: readonly PcapRecord[], keys: readonly KeyEntry[]): DecodedRecord[] {
  const observer = new DoeObserver(keys);
  return records.map((r, i) => {
    const base = { index: i + 1, timeUs: r.timeUs, length: r.data.length, origLen: r.origLen };
    if (r.data.length < r.origLen)
      return {
        ...base,
        direction: undefined,
        doe: undefined,
        protocol: "UNKNOWN",
        error: `truncated by the snaplen: ${r.data.length} of ${r.origLen} bytes captured`,
      };
    return { ...base, ...observer.observe(r.data) };
  });
}

function formatLine(d: DecodedRecord): string {
  const parts = [
    String(d.index).padStart(4),
    isoMicroseconds(d.timeUs),
    d.direction ? ARROW[d.direction] : "?",
  ];
  if (d.doe) parts.push(`DOE(${protocolId(d.doe)})`);
  if (d.discovery) parts.push(`DOE_DISCOVERY${formatFields(d.discovery)}`);
  if (d.secured) {
    const seq = d.secured.seq === undefined ? "" : ` seq ${d.secured.seq}`;
    parts.push(`SECURED(session ${hexDigits(d.secured.sessionId, 8)}${seq})`);
  }
  if (d.spdm) parts.push(`SPDM ${versionName(d.spdm.version)} ${d.spdm.name}${formatFields(d.spdm.fields)}`);
  if (d.inner) parts.push(`${d.inner.protocol} ${d.inner.name}${formatFields(d.inner.fields)}`);
  if (d.error) parts.push(`ERROR: ${d.error}`);
  return parts.join(" ");
}

function jsonLine(d: DecodedRecord): string {
  const { spdm, timeUs, ...rest } = d;
  return JSON.stringify({
    ...rest,
    time: isoMicroseconds(timeUs),
    timeUs,
    spdm: spdm && {
      version: versionName(spdm.version),
      name: spdm.name,
      fields: spdm.fields,
      hex: spdm.bytes.toString("hex"),
    },
  });
}

async function runDecode(argv: DecodeArgs): Promise<void> {
  const file = decodePcap(readFileSync(argv.file));
  if (file.header.linkType !== LinkType.PCI_DOE)
    throw new Error(
      `${argv.file}: link type ${file.header.linkType} is not PCI_DOE (${LinkType.PCI_DOE}); only DOE captures are decoded`,
    );
  const keys: KeyEntry[] = [
    ...(argv.keylog ? parseKeyLog(readFileSync(argv.keylog, "utf8")) : []),
    ...argv.psk.map((hex) => {
      if (!/^(?:[0-9a-f]{2})+$/i.test(hex)) throw new Error(`--psk ${hex}: not an even number of hex digits`);
      return { input: { psk: Buffer.from(hex, "hex") } };
    }),
  ];
  const decoded = decodeRecords(file.records, keys);
  for (const d of decoded) console.log(argv.json ? jsonLine(d) : formatLine(d));
  if (argv.json) return;
  const secured = decoded.filter((d) => d.secured);
  const failed = decoded.filter((d) => d.error).length;
  console.log(
    `${decoded.length} objects, ${secured.length} secured (${secured.filter((d) => d.secured?.decrypted).length} decrypted), ${failed} not decoded` +
      (file.trailingBytes > 0 ? `; ${file.trailingBytes} bytes after the last whole record (cut short)` : ""),
  );
}

export const decodeCommand = {
  command: "decode <file>",
  describe: "Decode a pcap capture of a DOE mailbox (ours or spdm-emu's): one line per DOE object",
  builder: (y: Argv) =>
    y
      .positional("file", { type: "string", demandOption: true, describe: "The .pcap file" })
      .option("keylog", {
        type: "string",
        describe: "Key log written with --keylog: decrypts the sessions it lists",
      })
      .option("psk", {
        type: "string",
        array: true,
        default: [] as string[],
        describe: "A PSK in hex, for PSK sessions in order (repeatable, as spdm_dump's --psk)",
      })
      .option("json", { type: "boolean", default: false, describe: "One JSON object per line" })
      .example("$0 decode cap/device-1234-01-00.0-mb0-c1.pcap --keylog keys.txt", "decode and decrypt"),
  handler: run(runDecode),
};
