/**
 * The requester against DMTF's recorded responses (spdm13_p256_auth: spdm_requester_emu →
 * spdm_responder_emu, SPDM 1.3, ECDSA P-256 / SHA-256). Requests must equal the recorded ones byte
 * for byte; the recorded nonces and RequesterContexts are fed back through `randomBytes`, so every
 * recorded signature (CHALLENGE_AUTH over M1, 9 MEASUREMENTS over L1) must verify. Then single
 * changes to the recording must each fail with a precise reason.
 */
import { describe, expect, it } from "vitest";
import { decodeSpdm, encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  BaseAsymAlgo,
  BaseHashAlgo,
  RequesterCapability as Cap,
  SpdmErrorCode,
} from "../../protocol/spdm/codes.js";
import {
  decodeMeasurementRecord,
  dmtfMeasurementBlock,
  encodeMeasurementRecord,
} from "../../protocol/spdm/measurements.js";
import type { MessageOf } from "../../protocol/spdm/messages.js";
import { decodeCertChain } from "../../src/crypto/cert-chain.js";
import { generateCertChain } from "../../src/crypto/certgen.js";
import { authenticateAll } from "../../src/requester/connection.js";
import { SpdmRequester, SpdmRequesterError, type SpdmTransport } from "../../src/spdm/requester.js";
import type { SpdmRequesterOptions } from "../../src/spdm/requester-options.js";
import { certChains, readDecoded } from "../vectors.js";

interface Pair {
  name: string;
  request: Buffer;
  /** The DOE payload as sent: the message and its DOE zero padding. */
  response: Buffer;
}

const capture = readDecoded("spdm13_p256_auth");

/** Request/response pairs of the capture, minus spdm-emu's re-reads after CHALLENGE that we don't do. */
function recordedPairs(): Pair[] {
  const cma = capture.frames.filter((f) => f.doeType === 1);
  const pairs: Pair[] = [];
  for (let i = 0; i < cma.length; i += 2) {
    const [req, rsp] = [cma[i]!, cma[i + 1]!];
    expect([req.dir, rsp.dir]).toEqual(["C2S", "S2C"]);
    pairs.push({ name: req.name!, request: req.plain!, response: rsp.wire!.subarray(8) });
  }
  const at = pairs.findIndex((p) => p.name === "CHALLENGE") + 1;
  // spdm_authentication() reads DIGESTS, slot 0's chain and DIGESTS again after CHALLENGE; any
  // request but GET_MEASUREMENTS resets L1, so leaving them out changes no signed transcript.
  expect(pairs.slice(at, at + 3).map((p) => p.name)).toEqual([
    "GET_DIGESTS",
    "GET_CERTIFICATE",
    "GET_DIGESTS",
  ]);
  pairs.splice(at, 3);
  return pairs;
}

/** The recorded nonces and RequesterContexts in the order the requester draws them (nonce first). */
function recordedRandom(pairs: readonly Pair[]): (size: number) => Buffer {
  const queue: Buffer[] = [];
  for (const { request: r } of pairs) {
    if (r[1] === 0x83) queue.push(r.subarray(4, 36), r.subarray(36, 44));
    if (r[1] === 0xe0) {
      if (r[2]! & 1) queue.push(r.subarray(4, 36));
      queue.push(r.subarray(r.length - 8));
    }
  }
  return (size) => {
    const next = queue.shift();
    if (next?.length !== size)
      throw new Error(`randomBytes(${size}): the recording has ${next?.length ?? "nothing"}`);
    return Buffer.from(next);
  };
}

/** Answers each request with the next recorded response; `strict` also demands the recorded request. */
class Replay implements SpdmTransport {
  private i = 0;
  constructor(
    private readonly pairs: readonly Pair[],
    private readonly strict = true,
  ) {}
  async send(request: Buffer): Promise<Buffer> {
    const p = this.pairs[this.i++];
    if (!p) throw new Error("the recording has no more exchanges");
    if (this.strict && !request.equals(p.request))
      throw new Error(
        `request ${this.i - 1} is ${request.toString("hex")}, recorded ${p.request.toString("hex")}`,
      );
    return Buffer.from(p.response);
  }
  get finished(): boolean {
    return this.i === this.pairs.length;
  }
}

const recordedRoot = decodeCertChain("SHA_256", certChains(capture.messages).get(0)!).certsDer[0]!;

/** spdm-emu's requester settings for this capture (its default --cap, masked to 1.3 by libspdm 1e16c60f). */
function options(pairs: readonly Pair[], extra: SpdmRequesterOptions = {}): SpdmRequesterOptions {
  return {
    // The capture ran with --ver 1.3 against a responder that also offers 1.4.
    versions: [0x10, 0x11, 0x12, 0x13],
    capabilities:
      Cap.CERT_CAP |
      Cap.CHAL_CAP |
      Cap.ENCRYPT_CAP |
      Cap.MAC_CAP |
      Cap.MUT_AUTH_CAP |
      Cap.KEY_EX_CAP |
      Cap.PSK_CAP |
      Cap.ENCAP_CAP |
      Cap.HBEAT_CAP |
      Cap.KEY_UPD_CAP |
      Cap.HANDSHAKE_IN_THE_CLEAR_CAP |
      Cap.CHUNK_CAP |
      Cap.MULTI_KEY_CAP_NEG |
      Cap.EP_INFO_CAP_SIG |
      Cap.LARGE_RESP_CAP,
    baseHashAlgo: BaseHashAlgo.SHA_256,
    baseAsymAlgo: BaseAsymAlgo.ECDSA_P256,
    certPortionLength: 0xffff,
    extraSlots: [4],
    trustRoot: recordedRoot,
    randomBytes: recordedRandom(pairs),
    sleep: async () => undefined,
    // The slot-4 leaf of the recording is valid from 2026-06-09.
    now: () => new Date("2026-07-01T00:00:00Z"),
    ...extra,
  };
}

/** The pairs with the response of the `nth` exchange named `name` changed by `edit`. */
function withResponse(name: string, nth: number, edit: (rsp: Buffer) => Buffer): Pair[] {
  const pairs = recordedPairs();
  const hits = pairs.filter((p) => p.name === name);
  const p = nth < 0 ? hits.at(nth)! : hits[nth]!;
  p.response = edit(Buffer.from(p.response));
  return pairs;
}

async function failure(
  pairs: Pair[],
  extra: SpdmRequesterOptions = {},
  strict = true,
): Promise<SpdmRequesterError> {
  const e = await authenticateAll(new SpdmRequester(new Replay(pairs, strict), options(pairs, extra))).catch(
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(SpdmRequesterError);
  return e as SpdmRequesterError;
}

/** Flips one bit `back` bytes before the end of the payload (DOE padding is at most 3 bytes). */
const flip = (back: number) => (r: Buffer) => {
  r[r.length - back]! ^= 1;
  return r;
};

const error = (errorCode: number, fields: object = {}) =>
  encodeSpdm({ code: "ERROR", version: 0x13, errorCode, errorData: 0, ...fields });

describe("SpdmRequester against DMTF's recorded responder (spdm13_p256_auth)", () => {
  it("replays the recorded flow request for request and verifies every signature", async () => {
    const pairs = recordedPairs();
    const replay = new Replay(pairs);
    const s = await authenticateAll(new SpdmRequester(replay, options(pairs)));
    expect(replay.finished).toBe(true);
    expect(s.exchanges).toBe(270);
    expect(s.version).toBe("1.3");
    expect(s.algorithms).toMatchObject({
      BaseHash: "SHA_256",
      BaseAsym: "ECDSA_P256",
      MeasurementHash: "SHA_512",
    });
    expect(s.algorithms["OtherParams"]).toBe("OPAQUE_FMT_1,MULTI_KEY_CONN");
    expect(s.requesterCapabilities).not.toContain("LARGE_RESP_CAP");
    expect(s.provisionedSlots).toEqual([0, 1, 4]);
    expect(s.certificateChain).toMatchObject({ bytes: 1390, certificates: 3 });
    expect(s.certificateChain.leafSubject).toContain("DMTF libspdm ECP256 responder cert");
    expect(s.certificateChain.trustAnchor).toContain("ECP256 CA");
    expect(s.otherSlots).toEqual([{ slot: 4, leafSubject: expect.stringContaining("slot4") }]);
    expect(s.challenge).toMatchObject({ measurementSummaryHashType: "All", summaryHashChecked: true });
    if (s.measurements.mode === "NONE") throw new Error("no measurements");
    expect(s.measurements).toMatchObject({ mode: "ONE_BY_ONE", signed: true });
    expect(s.measurements.blocks.map((b) => b.index)).toEqual([1, 2, 3, 4, 0x10, 0x11, 0xfd, 0xfe]);
    expect(s.measurements.blocks[0]).toMatchObject({ type: "ImmutableRom", form: "digest" });
    expect(s.measurements.blocks[0]!.value).toHaveLength(128); // SHA-512
  });

  it("without a trust root still verifies the chain's own consistency", async () => {
    const pairs = recordedPairs();
    const s = await authenticateAll(
      new SpdmRequester(new Replay(pairs), options(pairs, { trustRoot: undefined })),
    );
    expect(s.certificateChain.trustAnchor).toBeUndefined();
  });

  it("rejects a tampered CHALLENGE_AUTH signature", async () => {
    const e = await failure(withResponse("CHALLENGE", 0, flip(20)));
    expect(e.kind).toBe("signature");
    expect(e.message).toBe(
      "CHALLENGE_AUTH signature does not verify over M1 (ECDSA_P256, SHA_256, SPDM 1.3)",
    );
  });

  it("rejects a tampered MEASUREMENTS signature", async () => {
    const e = await failure(withResponse("GET_MEASUREMENTS", -1, flip(20)));
    expect(e.message).toBe("MEASUREMENTS signature does not verify over L1 (ECDSA_P256, SHA_256, SPDM 1.3)");
  });

  it("rejects a chain that does not end in the trust root", async () => {
    const other = await generateCertChain({ asym: "ECDSA_P256" });
    const e = await failure(recordedPairs(), { trustRoot: other.rootDer });
    expect(e.kind).toBe("certificate");
    expect(e.message).toMatch(/^slot 0 certificate chain: /);
  });

  it("rejects a truncated chain", async () => {
    const cut = 100;
    const e = await failure(
      withResponse("GET_CERTIFICATE", 0, (r) => {
        const portion = r.readUInt16LE(4) - cut;
        r.writeUInt16LE(portion, 4);
        return r.subarray(0, 8 + portion);
      }),
    );
    expect(e.kind).toBe("certificate");
    expect(e.message).toBe(
      "slot 0 certificate chain is malformed: certChain.length at byte 0: says 1390, chain is 1290 bytes",
    );
  });

  it("rejects a chain whose DIGESTS digest differs", async () => {
    const e = await failure(
      withResponse("GET_DIGESTS", 0, (r) => {
        r[4]! ^= 1;
        return r;
      }),
    );
    expect(e.message).toBe(
      "slot 0 certificate chain does not match its DIGESTS digest (SHA_256 of the 1390-byte chain)",
    );
  });

  it("checks CHALLENGE_AUTH's CertChainHash and RequesterContext before its signature", async () => {
    const hashFlipped = await failure(withResponse("CHALLENGE", 0, flip(170)));
    expect(hashFlipped.message).toBe(
      "CHALLENGE_AUTH CertChainHash is not the SHA_256 of slot 0's certificate chain",
    );
    // 174-byte message: ... RequesterContext (8) | Signature (64), then 2 bytes of DOE padding.
    const contextFlipped = await failure(withResponse("CHALLENGE", 0, flip(2 + 64 + 1)));
    expect(contextFlipped.message).toBe("CHALLENGE_AUTH does not echo our RequesterContext");
  });

  it("rejects a measurement digest of the wrong size for the negotiated hash", async () => {
    // The first unsigned read of index 1: shorten its SHA-512 digest to 32 bytes.
    const e = await failure(
      withResponse("GET_MEASUREMENTS", 1, (r) => {
        const m = decodeSpdm(r, {
          measurementHashSize: 64,
          measurementSignatureRequested: false,
        }) as MessageOf<"MEASUREMENTS">;
        const [block] = decodeMeasurementRecord(m.measurementRecord);
        const short = dmtfMeasurementBlock(1, block!.dmtf!.valueType, block!.dmtf!.value.subarray(0, 32));
        return encodeSpdm({ ...m, measurementRecord: encodeMeasurementRecord([short]) });
      }),
    );
    expect(e.kind).toBe("malformed");
    expect(e.message).toMatch(/^malformed MEASUREMENTS: .*digest of 32 bytes, the measurement hash has 64$/);
  });

  it("rejects a response at another SPDM version", async () => {
    const e = await failure(
      withResponse("GET_DIGESTS", 0, (r) => Buffer.concat([Buffer.of(0x12), r.subarray(1)])),
    );
    expect(e.message).toBe("DIGESTS carries SPDM version 1.2, expected 1.3");
  });

  it("rejects algorithms it did not offer", async () => {
    const e = await failure(recordedPairs(), { baseAsymAlgo: BaseAsymAlgo.ECDSA_P384 }, false);
    expect(e.kind).toBe("negotiation");
    expect(e.message).toBe(
      "ALGORITHMS BaseAsymSel selects ECDSA_P256, which we did not offer (we offer ECDSA_P384)",
    );
  });

  it("names an ERROR answer and an unexpected one", async () => {
    const e = await failure(withResponse("GET_CERTIFICATE", 0, () => error(SpdmErrorCode.InvalidRequest)));
    expect(e.kind).toBe("error-response");
    expect(e.message).toBe("responder answered GET_CERTIFICATE with ERROR InvalidRequest");
    const digests = recordedPairs().find((p) => p.name === "GET_DIGESTS")!.response;
    const u = await failure(withResponse("GET_CERTIFICATE", 0, () => digests));
    expect(u.message).toBe("responder answered GET_CERTIFICATE with DIGESTS, expected CERTIFICATE");
  });

  it("follows ResponseNotReady with RESPOND_IF_READY after the hinted wait", async () => {
    const pairs = recordedPairs();
    const replay = new Replay(pairs);
    const waits: number[] = [];
    let pending: Buffer | undefined;
    const transport: SpdmTransport = {
      async send(request) {
        if (request[1] === 0x81 && !pending) {
          pending = await replay.send(request);
          return error(SpdmErrorCode.ResponseNotReady, {
            responseNotReady: { rdtExponent: 10, requestCode: 0x81, token: 7, rdtm: 2 },
          });
        }
        if (request[1] === 0xff) {
          expect(request).toEqual(Buffer.from([0x13, 0xff, 0x81, 7]));
          return pending!;
        }
        return replay.send(request);
      },
    };
    const s = await authenticateAll(
      new SpdmRequester(transport, options(pairs, { sleep: async (ms) => void waits.push(ms) })),
    );
    expect(waits).toEqual([1.024]);
    expect(s.exchanges).toBe(271);
  });

  it("re-sends after Busy, a bounded number of times", async () => {
    const pairs = recordedPairs();
    const busyFor = (times: number): SpdmTransport => {
      const replay = new Replay(pairs);
      let left = times;
      return {
        send: async (req) => (req[1] === 0x83 && left-- > 0 ? error(SpdmErrorCode.Busy) : replay.send(req)),
      };
    };
    const s = await authenticateAll(new SpdmRequester(busyFor(2), options(pairs)));
    expect(s.exchanges).toBe(272);
    const e = await authenticateAll(new SpdmRequester(busyFor(4), options(recordedPairs()))).catch(
      (x: unknown) => x,
    );
    expect((e as Error).message).toBe("responder answered CHALLENGE with ERROR Busy");
  });

  it("backs off after each Busy, doubling the pause", async () => {
    const pairs = recordedPairs();
    const replay = new Replay(pairs);
    let left = 3;
    const waits: number[] = [];
    const transport: SpdmTransport = {
      send: async (req) => (req[1] === 0x83 && left-- > 0 ? error(SpdmErrorCode.Busy) : replay.send(req)),
    };
    await authenticateAll(
      new SpdmRequester(transport, options(pairs, { sleep: async (ms) => void waits.push(ms) })),
    );
    expect(waits).toEqual([100, 200, 400]);
  });

  it("fetches a LargeResponse with CHUNK_GET", async () => {
    const pairs = recordedPairs();
    const replay = new Replay(pairs);
    const chunks: Buffer[] = [];
    const transport: SpdmTransport = {
      async send(request) {
        if (request[1] === 0x82 && request[2] === 0) {
          const large = (await replay.send(request)).subarray(0, 8 + 1390); // the exact CERTIFICATE
          for (let off = 0; off < large.length; off += 500) chunks.push(large.subarray(off, off + 500));
          return error(SpdmErrorCode.LargeResponse, { largeResponseHandle: 9 });
        }
        if (request[1] === 0x86) {
          expect(request[3]).toBe(9);
          const seq = request.readUInt16LE(4);
          return encodeSpdm({
            code: "CHUNK_RESPONSE",
            version: 0x13,
            attributes: seq === chunks.length - 1 ? 1 : 0,
            handle: 9,
            chunkSeqNo: seq,
            largeMessageSize: seq === 0 ? 8 + 1390 : undefined,
            chunk: chunks[seq]!,
          });
        }
        return replay.send(request);
      },
    };
    const s = await authenticateAll(new SpdmRequester(transport, options(pairs)));
    expect(chunks).toHaveLength(3);
    expect(s.exchanges).toBe(270 + 3); // the LargeResponse stands in for CERTIFICATE
  });
});
