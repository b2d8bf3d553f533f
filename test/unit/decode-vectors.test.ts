/**
 * `doe-emu decode` on DMTF spdm-emu recordings: each recording's NORMAL frames written as the pcap
 * spdm-emu writes (link type PCI_DOE, the DOE objects in wire order), its session secrets as a key
 * log. Every object must decode, every secured record decrypt to the recorded plaintext, and every
 * message re-encode byte for byte.
 */
import { describe, expect, it } from "vitest";
import { decodePcap, encodePcapHeader, encodePcapRecord, LinkType } from "../../protocol/pcap.js";
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import { decodeRecords } from "../../src/cli/decode.js";
import { parseKeyLog } from "../../src/spdm/keylog.js";
import { CAPTURES, readDecoded, readSecrets, SESSION_CAPTURES } from "../vectors.js";

/** The pcap spdm-emu would have written for a recording (timestamps: one second per object). */
function pcapOf(capture: (typeof CAPTURES)[number]): Buffer {
  const objects = readDecoded(capture).frames.filter((f) => f.command === "NORMAL" && f.wire);
  return Buffer.concat([
    encodePcapHeader({ snaplen: 65536, linkType: LinkType.PCI_DOE }),
    ...objects.map((f, i) =>
      encodePcapRecord({ timeUs: (1000 + i) * 1_000_000, data: f.wire!, origLen: f.wire!.length }),
    ),
  ]);
}

/** A key log with the recording's sessions, in establishment order. */
function keyLogOf(capture: (typeof CAPTURES)[number]): string {
  if (!(SESSION_CAPTURES as readonly string[]).includes(capture)) return "";
  const secrets = readSecrets(capture);
  const lines: string[] = [];
  for (let n = 1; secrets.has(`session${n}.session_id`); n++) {
    const id = secrets.get(`session${n}.session_id`)!.toString("hex");
    const dhe = secrets.get(`session${n}.dhe_secret`);
    const psk = secrets.get(`session${n}.psk`);
    lines.push(
      `SPDM_SESSION ${id} ${dhe ? `DHE_SECRET ${dhe.toString("hex")}` : `PSK ${psk!.toString("hex")}`}`,
    );
  }
  return lines.join("\n");
}

describe.each(CAPTURES)("decode %s", (capture) => {
  const frames = readDecoded(capture).frames.filter((f) => f.command === "NORMAL" && f.wire);
  const decoded = decodeRecords(decodePcap(pcapOf(capture)).records, parseKeyLog(keyLogOf(capture)));

  it("decodes every object, in the recorded direction", () => {
    expect(decoded).toHaveLength(frames.length);
    expect(decoded.filter((d) => d.error).map((d) => `${d.index}: ${d.error}`)).toEqual([]);
    expect(decoded.map((d) => d.direction)).toEqual(
      frames.map((f) => (f.dir === "C2S" ? "request" : "response")),
    );
  });

  it("decrypts every secured record to the recorded message and names it as libspdm does", () => {
    frames.forEach((f, i) => {
      const d = decoded[i]!;
      if (f.secured)
        expect(d.secured).toMatchObject({
          sessionId: f.secured.sessionId,
          seq: f.secured.seq,
          decrypted: true,
        });
      if (f.name) {
        expect(d.spdm?.name).toBe(f.name);
        expect(d.spdm?.bytes.toString("hex")).toBe(f.plain!.toString("hex"));
      }
      if (f.vdm) {
        // The recorder names CXL's by family and protocol ("CXL TSP"), we by one name ("CXL_TSP").
        const protocol = f.vdm.family === "PCI" ? f.vdm.protocol : `CXL_${f.vdm.protocol}`;
        expect(d.inner).toMatchObject({ protocol });
        expect(d.inner?.name).not.toBe("?");
      }
    });
  });

  it("re-encodes every decoded message byte for byte", () => {
    for (const d of decoded) if (d.spdm) expect(encodeSpdm(d.spdm.message)).toEqual(d.spdm.bytes);
  });
});

describe("decode without keys", () => {
  it("names the secured records it cannot open and the missing key", () => {
    const decoded = decodeRecords(decodePcap(pcapOf("spdm13_psk")).records, []);
    const secured = decoded.filter((d) => d.secured);
    expect(secured.length).toBeGreaterThan(0);
    for (const d of secured) expect(d.error).toMatch(/no PSK/);
    expect(decoded.filter((d) => !d.secured && d.error)).toEqual([]);
  });
});
