/**
 * Re-derives every key-schedule value of every recorded session from the transcript (plain= bytes)
 * plus the DHE secret or PSK, and checks the verify data inside the recorded messages.
 */
import { hkdfSync } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DecodeError } from "../../protocol/errors.js";
import {
  AEAD,
  ASYM,
  DHE,
  type DheAlgo,
  dheKeyPair,
  HASH,
  hash,
  hkdfExpand,
  hkdfExtract,
} from "../../src/crypto/suites.js";
import {
  binConcat,
  deriveDataKeys,
  deriveHandshakeKeys,
  handshakeSalt,
  type KeyScheduleSuite,
  type SessionSecretInput,
  type TrafficKeys,
  updateTrafficKeys,
  verifyData,
} from "../../src/spdm/key-schedule.js";
import {
  certChains,
  keyExchangeRspSignatureAt,
  type MessageFrame,
  readDecoded,
  readSecrets,
  SESSION_CAPTURES,
  secret,
  vcaTranscript,
} from "../vectors.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** A verify-data field in a recorded message: whose finished key MACs which transcript. */
interface VerifyField {
  what: string;
  recorded: Buffer;
  signer: "request" | "response";
  transcript: Buffer;
}

describe.each(SESSION_CAPTURES)("%s", (capture) => {
  const { messages, negotiated: n } = readDecoded(capture);
  const secrets = readSecrets(capture);
  const suite: KeyScheduleSuite = { version: n.version, hash: n.hash, aead: n.aead };
  const H = HASH[n.hash].size;
  const A = vcaTranscript(messages);
  const chains = certChains(messages);
  // 1.3 MULTI_KEY_CONN puts the first DIGESTS response after VCA into TH (not GET_DIGESTS).
  const D = n.multiKey
    ? (messages.find((m) => m.name === "DIGESTS")?.plain ?? Buffer.alloc(0))
    : Buffer.alloc(0);
  const exchanges = messages.filter((m) => m.name === "KEY_EXCHANGE" || m.name === "PSK_EXCHANGE");

  const nextMessage = (from: MessageFrame, name: string) => {
    const m = messages.find((x) => x.index > from.index && x.name === name);
    if (!m) throw new Error(`no ${name} after frame ${from.index}`);
    return m;
  };

  /** Rebuilds one session: the values named as in the secrets file, and the verify-data checks. */
  function rebuild(ex: MessageFrame, prefix: string) {
    const values: Record<string, Buffer> = {};
    const rsp = nextMessage(ex, `${ex.name}_RSP`);
    const fin = nextMessage(rsp, ex.name === "KEY_EXCHANGE" ? "FINISH" : "PSK_FINISH");
    const finRsp = nextMessage(fin, `${fin.name}_RSP`);
    const withoutVerify = (m: MessageFrame) => m.plain.subarray(0, -H);
    const verifyOf = (m: MessageFrame) => m.plain.subarray(-H);
    let th1: Buffer;
    let input: SessionSecretInput;
    const fields: VerifyField[] = [];
    let head: Buffer;

    if (ex.name === "KEY_EXCHANGE") {
      values["cert_chain_hash"] = hash(n.hash, chains.get(ex.plain[3]! & 0xf)!);
      head = Buffer.concat([A, D, values["cert_chain_hash"], ex.plain, rsp.plain]);
      // TH1 takes KEY_EXCHANGE_RSP up to and including the signature, not ResponderVerifyData.
      const sigEnd = keyExchangeRspSignatureAt(n, ex.plain, rsp.plain) + ASYM[n.asym].sigSize;
      th1 = head.subarray(0, head.length - rsp.plain.length + sigEnd);
      if (sigEnd < rsp.plain.length) {
        fields.push({
          what: "KEY_EXCHANGE_RSP",
          recorded: rsp.plain.subarray(sigEnd),
          signer: "response",
          transcript: th1,
        });
      }
      input = { dheSecret: secret(secrets, `${prefix}dhe_secret`) };
    } else {
      head = Buffer.concat([A, ex.plain, rsp.plain]);
      th1 = Buffer.concat([A, ex.plain, withoutVerify(rsp)]);
      fields.push({ what: "PSK_EXCHANGE_RSP", recorded: verifyOf(rsp), signer: "response", transcript: th1 });
      input = { psk: secret(secrets, `${prefix}psk`) };
      values["psk_salt0"] = handshakeSalt(suite, "psk");
    }
    // No mutual authentication in these captures, so FINISH carries no signature.
    fields.push({
      what: fin.name,
      recorded: verifyOf(fin),
      signer: "request",
      transcript: Buffer.concat([head, withoutVerify(fin)]),
    });
    if (finRsp.plain.length > 4) {
      const transcript = Buffer.concat([head, fin.plain, withoutVerify(finRsp)]);
      fields.push({ what: finRsp.name, recorded: verifyOf(finRsp), signer: "response", transcript });
    }
    const th2 = Buffer.concat([head, fin.plain, finRsp.plain]);

    const sessionId = Buffer.alloc(4);
    sessionId.writeUInt16BE(rsp.plain.readUInt16LE(4), 0);
    sessionId.writeUInt16BE(ex.plain.readUInt16LE(4), 2);
    values["session_id"] = sessionId;
    values["th1_hash"] = hash(n.hash, th1);
    values["th2_hash"] = hash(n.hash, th2);
    const hs = deriveHandshakeKeys(suite, input, values["th1_hash"]);
    const data = deriveDataKeys(suite, hs.handshakeSecret, values["th2_hash"]);
    const checks = fields.map((f) => ({
      ...f,
      expected: verifyData(suite, hs[f.signer].finishedKey, f.transcript),
    }));
    Object.assign(values, {
      handshake_secret: hs.handshakeSecret,
      salt1_derived: data.salt1,
      master_secret: data.masterSecret,
      export_master_secret: data.exportMasterSecret,
    });
    const put = (name: string, t: TrafficKeys) => {
      values[`${name}_secret`] = t.secret;
      values[`${name}_key`] = t.key;
      values[`${name}_iv`] = t.iv;
    };
    for (const dir of ["request", "response"] as const) {
      put(`${dir}_handshake`, hs[dir]);
      values[`${dir}_finished_key`] = hs[dir].finishedKey;
      let keys = data[dir];
      put(`${dir}_data`, keys);
      for (let k = 1; secrets.has(`${prefix}ku${k}.${dir}_data_secret`); k++) {
        keys = updateTrafficKeys(suite, keys);
        put(`ku${k}.${dir}_data`, keys);
      }
    }
    return { values, checks, input };
  }

  it("binconcat strings match the file", () => {
    const named: Record<string, string> = {
      key: hex(binConcat(n.version, AEAD[n.aead].keySize, "key")),
      iv: hex(binConcat(n.version, 12, "iv")),
      finished: hex(binConcat(n.version, H, "finished")),
      derived: hex(binConcat(n.version, H, "derived")),
      traffic_upd: hex(binConcat(n.version, H, "traffic upd")),
    };
    const inFile = Object.fromEntries(
      [...secrets].filter(([k]) => k.startsWith("binconcat.")).map(([k, v]) => [k.slice(10), hex(v)]),
    );
    expect(named).toEqual(inFile);
  });

  it("has one secrets group per *_EXCHANGE", () => {
    const groups = [...secrets.keys()].filter((k) => k.endsWith(".session_id"));
    expect(groups).toHaveLength(exchanges.length);
  });

  const groups = exchanges.map((ex, i) => ({
    ex,
    prefix: `session${i + 1}.`,
    label: `session${i + 1} (${ex.name})`,
  }));
  describe.each(groups)("$label", ({ ex, prefix }) => {
    const s = rebuild(ex, prefix);

    it("re-derives every value in the secrets file", () => {
      const inFile = Object.fromEntries(
        [...secrets]
          .filter(([k]) => k.startsWith(prefix) && k !== `${prefix}dhe_secret` && k !== `${prefix}psk`)
          .map(([k, v]) => [k.slice(prefix.length), hex(v)]),
      );
      const ours = Object.fromEntries(Object.keys(inFile).map((k) => [k, s.values[k] && hex(s.values[k])]));
      expect(Object.keys(inFile).length).toBeGreaterThanOrEqual(20);
      expect(ours).toEqual(inFile);
    });

    it("computes the verify data recorded in the handshake messages", () => {
      expect(s.checks.length).toBeGreaterThanOrEqual(2);
      for (const c of s.checks) expect(hex(c.expected), c.what).toBe(hex(c.recorded));
    });

    if (ex.name === "PSK_EXCHANGE") {
      it("uses a PSK the capture itself reveals", () => {
        const { psk } = s.input as { psk: Buffer };
        // The sample PSK "TestPskData\0", or (secondary CXL TSP session) one sent earlier in session 1.
        const earlier = messages.some(
          (m) => m.index < ex.index && m.spdmSession !== 0 && m.plain.includes(psk),
        );
        expect(psk.equals(Buffer.from("TestPskData\0", "latin1")) || earlier).toBe(true);
      });
    }
  });
});

describe("HKDF", () => {
  it("Extract then Expand equals node's hkdfSync", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("SHA_256", "SHA_384", "SHA_512" as const),
        fc.uint8Array({ minLength: 1, maxLength: 80 }),
        fc.uint8Array({ maxLength: 80 }),
        fc.uint8Array({ maxLength: 80 }),
        fc.integer({ min: 1, max: 255 * 32 }),
        (h, ikm, salt, info, length) => {
          const ours = hkdfExpand(
            h,
            hkdfExtract(h, salt.length ? salt : Buffer.alloc(HASH[h].size), ikm),
            info,
            length,
          );
          expect(ours.equals(Buffer.from(hkdfSync(HASH[h].node, ikm, salt, info, length)))).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("refuses more than 255 blocks", () => {
    expect(() => hkdfExpand("SHA_256", Buffer.alloc(32), Buffer.alloc(0), 255 * 32 + 1)).toThrow(RangeError);
  });
});

const ECDHE = (Object.keys(DHE) as DheAlgo[]).filter((a) => typeof DHE[a].group === "string");
const FFDHE = (Object.keys(DHE) as DheAlgo[]).filter((a) => typeof DHE[a].group === "number");

describe.each(FFDHE)("FFDHE %s", (alg) => {
  it("both sides reach the same prime-sized secret; a fixed private value gives a fixed Y", () => {
    const req = dheKeyPair(alg);
    const rsp = dheKeyPair(alg);
    const size = DHE[alg].exchangeSize;
    expect(req.exchangeData.length).toBe(size);
    const secret = req.sharedSecret(rsp.exchangeData);
    expect(secret.length).toBe(size);
    expect(rsp.sharedSecret(req.exchangeData)).toEqual(secret);
    const x = Buffer.alloc(32, 0x5a);
    expect(dheKeyPair(alg, x).exchangeData).toEqual(dheKeyPair(alg, x).exchangeData);
  });

  it("rejects Y of the wrong size, 0, 1 and above p-2 with DecodeError", () => {
    const me = dheKeyPair(alg);
    const size = DHE[alg].exchangeSize;
    const one = Buffer.alloc(size);
    one[size - 1] = 1;
    const big = Buffer.alloc(size, 0xff); // above p, whose high bits are not all one
    for (const bad of [Buffer.alloc(size - 1, 1), Buffer.alloc(size), one, big])
      expect(() => me.sharedSecret(bad)).toThrow(DecodeError);
  });
});

describe.each(ECDHE)("ECDHE %s", (alg) => {
  it("both sides reach the same secret and so the same handshake keys", () => {
    const req = dheKeyPair(alg);
    const rsp = dheKeyPair(alg);
    expect(req.exchangeData.length).toBe(DHE[alg].exchangeSize);
    const secret = req.sharedSecret(rsp.exchangeData);
    expect(secret.length).toBe(Math.ceil(DHE[alg].exchangeSize / 2));
    expect(rsp.sharedSecret(req.exchangeData).equals(secret)).toBe(true);
    const suite: KeyScheduleSuite = { version: 0x13, hash: "SHA_384", aead: "AES_256_GCM" };
    const th1 = hash("SHA_384", Buffer.from("TH1"));
    expect(deriveHandshakeKeys(suite, { dheSecret: secret }, th1)).toEqual(
      deriveHandshakeKeys(suite, { dheSecret: rsp.sharedSecret(req.exchangeData) }, th1),
    );
  });

  it("is fixed by a given private scalar, fresh otherwise", () => {
    const scalar = Buffer.alloc(Math.ceil(DHE[alg].exchangeSize / 2), 0x11);
    scalar[0] = 0; // below the group order of every curve, P-521 included
    expect(dheKeyPair(alg, scalar).exchangeData).toEqual(dheKeyPair(alg, scalar).exchangeData);
    expect(dheKeyPair(alg).exchangeData).not.toEqual(dheKeyPair(alg).exchangeData);
  });

  it("rejects peer data of the wrong size or off the curve with DecodeError", () => {
    const me = dheKeyPair(alg);
    expect(() => me.sharedSecret(me.exchangeData.subarray(1))).toThrow(DecodeError);
    expect(() => me.sharedSecret(Buffer.alloc(DHE[alg].exchangeSize, 1))).toThrow(DecodeError);
  });
});
