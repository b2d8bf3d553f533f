/**
 * Our verification accepts DMTF's recorded CHALLENGE_AUTH, MEASUREMENTS and KEY_EXCHANGE_RSP
 * signatures over transcripts rebuilt with libspdm's rules, and rejects tampered ones; sign/verify
 * round trips for every asymmetric algorithm; key import from PEM/DER.
 */
import { generateKeyPair, generateKeyPairSync, type KeyObject, verify } from "node:crypto";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { DecodeError } from "../../protocol/errors.js";
import { decodeCertChain, encodeCertChain, leafPublicKey } from "../../src/crypto/cert-chain.js";
import {
  ASYM,
  type AsymAlgo,
  asymSign,
  asymVerify,
  hash,
  importPrivateKey,
  importPublicKey,
  keyFits,
} from "../../src/crypto/suites.js";
import {
  messageToSign,
  type SigningContextName,
  type SigningSuite,
  signingContext,
  signTranscript,
  verifyTranscript,
} from "../../src/spdm/signing.js";
import {
  type Capture,
  Code,
  certChains,
  keyExchangeRspSignatureAt,
  type MessageFrame,
  readDecoded,
  VCA_NAMES,
} from "../vectors.js";

interface SignedMessage {
  frame: number;
  context: SigningContextName;
  slot: number;
  transcript: Buffer;
  signature: Buffer;
}

// Requests after which libspdm drops B and C (M1/M2) unless CHALLENGE already succeeded
// (libspdm 1e16c60f libspdm_reset_message_buffer_via_request_code).
const RESETS_B_C: readonly number[] = [0xe4, 0xe0, 0xe5, 0xe6, 0xe7, 0xe9, 0xe8, 0xea, 0xec];
const B_NAMES = ["GET_DIGESTS", "DIGESTS", "GET_CERTIFICATE", "CERTIFICATE"];

/**
 * Replays a capture's messages through libspdm's transcript rules and returns every signed message:
 *  - A: VCA; GET_VERSION resets everything.
 *  - M1/M2 = A || B || C: B = GET_DIGESTS/DIGESTS/GET_CERTIFICATE/CERTIFICATE since the last reset,
 *    C = CHALLENGE || CHALLENGE_AUTH without the signature. CHALLENGE_AUTH clears B and C.
 *  - L1/L2 = [A at 1.2+] || M || GET_MEASUREMENTS || MEASUREMENTS without the signature, where M
 *    (one per session, plus one outside) collects unsigned pairs and is cleared by any other
 *    request in that scope, an ERROR response, and a signed MEASUREMENTS.
 *  - KEY_EXCHANGE_RSP: A || [D: first DIGESTS at 1.3 multi-key] || Hash(chain) || KE || KR up to the signature.
 */
function signedMessages(capture: Capture) {
  const { messages, negotiated: n } = readDecoded(capture);
  const S = ASYM[n.asym].sigSize;
  const chains = certChains(messages);
  let A: Buffer[] = [];
  let B: Buffer[] = [];
  let C: Buffer[] = [];
  let D: Buffer | undefined;
  const M = new Map<number, Buffer[]>();
  let authenticated = false;
  let request: MessageFrame | undefined;
  const out: SignedMessage[] = [];
  const signed = (
    m: MessageFrame,
    context: SigningContextName,
    slot: number,
    parts: Buffer[],
    sigAt: number,
  ) =>
    out.push({
      frame: m.index,
      context,
      slot,
      transcript: Buffer.concat([...parts, m.plain.subarray(0, sigAt)]),
      signature: m.plain.subarray(sigAt, sigAt + S),
    });

  for (const m of messages) {
    const code = m.plain[1]!;
    if (code >= 0x80) {
      request = m;
      if (code === Code.GET_VERSION) [A, B, C, D, authenticated] = [[], [], [], undefined, false];
      if (code === Code.GET_VERSION) M.clear();
      if (code !== Code.GET_MEASUREMENTS) M.set(m.spdmSession, []);
      if (RESETS_B_C.includes(code) && !authenticated) [B, C] = [[], []];
    }
    const mlog = M.get(m.spdmSession) ?? [];
    if (VCA_NAMES.includes(m.name)) A.push(m.plain);
    else if (B_NAMES.includes(m.name)) B.push(m.plain);
    if (code === Code.DIGESTS) D ??= m.plain;
    if (code === Code.CHALLENGE) C = [m.plain];
    else if (code === Code.CHALLENGE_AUTH) {
      signed(m, "CHALLENGE_AUTH", m.plain[2]! & 0xf, [...A, ...B, ...C], m.plain.length - S);
      [B, C, authenticated] = [[], [], true];
    } else if (code === Code.MEASUREMENTS && request) {
      if (request.plain[2]! & 1) {
        const parts = [...(n.version >= 0x12 ? A : []), ...mlog, request.plain];
        signed(m, "MEASUREMENTS", m.plain[3]! & 0xf, parts, m.plain.length - S);
        M.set(m.spdmSession, []);
      } else M.set(m.spdmSession, [...mlog, request.plain, m.plain]);
    } else if (code === Code.ERROR) M.set(m.spdmSession, []);
    else if (code === Code.KEY_EXCHANGE_RSP && request) {
      const slot = request.plain[3]! & 0xf;
      const parts = [...A, ...(n.multiKey && D ? [D] : []), hash(n.hash, chains.get(slot)!), request.plain];
      signed(m, "KEY_EXCHANGE_RSP", slot, parts, keyExchangeRspSignatureAt(n, request.plain, m.plain));
    }
  }
  const suite: SigningSuite = { version: n.version, hash: n.hash, asym: n.asym };
  const keys = new Map([...chains].map(([slot, chain]) => [slot, leafPublicKey(n.hash, chain)]));
  return { signed: out, suite, keys, chains };
}

// How many signed messages of each kind each capture holds (its recording in test/fixtures/vectors/).
const EXPECTED: [Capture, Record<string, number>][] = [
  ["spdm13_p256_auth", { CHALLENGE_AUTH: 1, MEASUREMENTS: 9 }],
  ["spdm12_keyex", { CHALLENGE_AUTH: 1, MEASUREMENTS: 27, KEY_EXCHANGE_RSP: 2 }],
  ["spdm13_keyex", { CHALLENGE_AUTH: 1, MEASUREMENTS: 27, KEY_EXCHANGE_RSP: 2 }],
  ["spdm13_app", { KEY_EXCHANGE_RSP: 2 }],
];

describe.each(EXPECTED)("recorded signatures of %s", (capture, counts) => {
  const { signed, suite, keys, chains } = signedMessages(capture);

  it("finds the expected signed messages", () => {
    const found: Record<string, number> = {};
    for (const s of signed) found[s.context] = (found[s.context] ?? 0) + 1;
    expect(found).toEqual(counts);
  });

  it("cert chains parse, their root hash matches, and the leaf key fits the negotiated algorithm", () => {
    expect(chains.size).toBe(2);
    for (const [, chain] of chains) {
      const c = decodeCertChain(suite.hash, chain);
      expect(c.certs.length).toBeGreaterThan(1);
      expect(encodeCertChain(suite.hash, c.certsDer).equals(chain)).toBe(true);
      expect(keyFits(suite.asym, c.certs.at(-1)!.publicKey)).toBe(true);
    }
  });

  it("every signature verifies with the slot's leaf key", () => {
    for (const s of signed) {
      const ok = verifyTranscript(suite, keys.get(s.slot)!, s.context, s.transcript, s.signature);
      expect(ok, `${s.context} frame ${s.frame} slot ${s.slot}`).toBe(true);
    }
  });

  it("tampered signatures, transcripts, contexts and keys fail", () => {
    const s = signed.at(-1)!;
    const key = keys.get(s.slot)!;
    // Not another slot's key: at 1.2 the sample's slot 1 chain carries the same leaf key as slot 0.
    const other = generateKeyPairSync("ec", { namedCurve: ASYM[suite.asym].size as string }).publicKey;
    const flipped = (b: Buffer, at: number) => {
      const c = Buffer.from(b);
      c[at]! ^= 0x80;
      return c;
    };
    expect(verifyTranscript(suite, key, s.context, s.transcript, flipped(s.signature, 5))).toBe(false);
    expect(verifyTranscript(suite, key, s.context, flipped(s.transcript, 10), s.signature)).toBe(false);
    expect(verifyTranscript(suite, key, s.context, s.transcript, s.signature.subarray(1))).toBe(false);
    expect(verifyTranscript(suite, key, "FINISH", s.transcript, s.signature)).toBe(false);
    expect(verifyTranscript({ ...suite, version: 0x11 }, key, s.context, s.transcript, s.signature)).toBe(
      false,
    );
    expect(verifyTranscript(suite, other, s.context, s.transcript, s.signature)).toBe(false);
  });
});

describe("signing context", () => {
  it("is the version prefix four times, then the context right-aligned in 36 zero-filled bytes", () => {
    const ctx = signingContext(0x12, "CHALLENGE_AUTH");
    expect(ctx.length).toBe(100);
    expect(ctx.subarray(0, 64).toString("latin1")).toBe("dmtf-spdm-v1.2.*".repeat(4));
    expect(ctx.subarray(64, 68).equals(Buffer.alloc(4))).toBe(true);
    expect(ctx.subarray(68).toString("latin1")).toBe("responder-challenge_auth signing");
    const ke = signingContext(0x13, "KEY_EXCHANGE_RSP");
    expect(ke.subarray(0, 16).toString("latin1")).toBe("dmtf-spdm-v1.3.*");
    expect(ke.subarray(64).toString("latin1")).toBe("\0\0responder-key_exchange_rsp signing");
  });

  it("1.0/1.1 sign the transcript itself, 1.2+ the context and the transcript hash", () => {
    const t = Buffer.from("transcript");
    expect(messageToSign(0x11, "SHA_256", "MEASUREMENTS", t).equals(t)).toBe(true);
    const m = messageToSign(0x12, "SHA_384", "MEASUREMENTS", t);
    expect(m.equals(Buffer.concat([signingContext(0x12, "MEASUREMENTS"), hash("SHA_384", t)]))).toBe(true);
  });
});

describe("sign and verify round trips", () => {
  const generate = promisify(generateKeyPair);
  const pairs = new Map<AsymAlgo, { privateKey: KeyObject; publicKey: KeyObject }>();
  beforeAll(async () => {
    await Promise.all(
      (Object.keys(ASYM) as AsymAlgo[]).map(async (alg) => {
        const { kind, size } = ASYM[alg];
        const pair =
          kind === "eddsa"
            ? await generate(size as "ed25519", undefined)
            : typeof size === "string"
              ? await generate("ec", { namedCurve: size })
              : await generate("rsa", { modulusLength: size });
        pairs.set(alg, pair);
      }),
    );
  }, 60_000);

  it.each(Object.keys(ASYM) as AsymAlgo[])("%s at 1.1 and 1.3 with SHA-256/384/512", (alg) => {
    const { privateKey, publicKey } = pairs.get(alg)!;
    const transcript = Buffer.from("A || B || C");
    for (const version of [0x11, 0x13]) {
      for (const h of ["SHA_256", "SHA_384", "SHA_512"] as const) {
        const suite: SigningSuite = { version, hash: h, asym: alg };
        const sig = signTranscript(suite, privateKey, "FINISH", transcript);
        expect(sig.length).toBe(ASYM[alg].sigSize);
        expect(verifyTranscript(suite, publicKey, "FINISH", transcript, sig)).toBe(true);
        expect(verifyTranscript(suite, publicKey, "FINISH", Buffer.from("A || B || D"), sig)).toBe(false);
      }
    }
  });

  it("EdDSA signs the message itself, unhashed (pure Ed25519/Ed448)", () => {
    const t = Buffer.from("A || B || C");
    for (const alg of ["EDDSA_25519", "EDDSA_448"] as const) {
      const { privateKey, publicKey } = pairs.get(alg)!;
      for (const version of [0x11, 0x12, 0x14]) {
        const sig = signTranscript({ version, hash: "SHA_384", asym: alg }, privateKey, "CHALLENGE_AUTH", t);
        expect(verify(null, messageToSign(version, "SHA_384", "CHALLENGE_AUTH", t), publicKey, sig)).toBe(
          true,
        );
      }
    }
  });

  it("refuses keys of another algorithm or size", () => {
    const p256 = pairs.get("ECDSA_P256")!;
    const rsa2048 = pairs.get("RSASSA_2048")!;
    expect(() => asymSign("ECDSA_P384", "SHA_384", p256.privateKey, Buffer.alloc(1))).toThrow(TypeError);
    expect(() => asymSign("RSASSA_3072", "SHA_384", rsa2048.privateKey, Buffer.alloc(1))).toThrow(TypeError);
    expect(() => asymSign("ECDSA_P256", "SHA_256", p256.publicKey, Buffer.alloc(1))).toThrow(TypeError);
    const sig = asymSign("ECDSA_P256", "SHA_256", p256.privateKey, Buffer.alloc(1));
    expect(asymVerify("ECDSA_P384", "SHA_256", p256.publicKey, Buffer.alloc(1), sig)).toBe(false);
    // RSASSA and RSA-PSS are different schemes over the same key.
    const pss = asymSign("RSAPSS_2048", "SHA_256", rsa2048.privateKey, Buffer.alloc(1));
    expect(asymVerify("RSASSA_2048", "SHA_256", rsa2048.publicKey, Buffer.alloc(1), pss)).toBe(false);
  });

  it("imports private keys from PEM and DER (PKCS#8, SEC1, PKCS#1) and public keys from SPKI or a certificate", () => {
    const ec = pairs.get("ECDSA_P384")!.privateKey;
    const rsa = pairs.get("RSAPSS_2048")!.privateKey;
    const forms = [
      ec.export({ format: "pem", type: "pkcs8" }),
      ec.export({ format: "pem", type: "sec1" }),
      ec.export({ format: "der", type: "pkcs8" }),
      ec.export({ format: "der", type: "sec1" }),
      rsa.export({ format: "pem", type: "pkcs1" }),
      rsa.export({ format: "der", type: "pkcs1" }),
      rsa.export({ format: "der", type: "pkcs8" }),
    ];
    for (const f of forms) {
      const k = importPrivateKey(f);
      expect(k.equals(f === forms[4] || f === forms[5] || f === forms[6] ? rsa : ec)).toBe(true);
    }
    const pub = pairs.get("ECDSA_P384")!.publicKey;
    expect(importPublicKey(pub.export({ format: "der", type: "spki" })).equals(pub)).toBe(true);
    expect(importPublicKey(pub.export({ format: "pem", type: "spki" }) as string).equals(pub)).toBe(true);
    const rsaPub = pairs.get("RSAPSS_2048")!.publicKey;
    expect(importPublicKey(rsaPub.export({ format: "der", type: "pkcs1" })).equals(rsaPub)).toBe(true);
    const { chains, suite } = signedMessages("spdm13_p256_auth");
    const c = decodeCertChain(suite.hash, chains.get(0)!);
    expect(importPublicKey(c.certsDer.at(-1)!).equals(c.certs.at(-1)!.publicKey)).toBe(true);
    expect(importPublicKey(c.certs.at(-1)!.toString()).equals(c.certs.at(-1)!.publicKey)).toBe(true);
    expect(() => importPrivateKey(Buffer.from("not a key"))).toThrow(TypeError);
  });

  it("cert chain decoding rejects a wrong length, root hash or truncated certificate", () => {
    const { chains, suite } = signedMessages("spdm13_p256_auth");
    const chain = chains.get(0)!;
    const bad = (edit: (b: Buffer) => Buffer) => () => decodeCertChain(suite.hash, edit(Buffer.from(chain)));
    expect(bad((b) => b.subarray(0, -1))).toThrow(DecodeError);
    expect(
      bad((b) => {
        b[4]! ^= 1;
        return b;
      }),
    ).toThrow(DecodeError);
    expect(
      bad((b) => {
        const t = b.subarray(0, -10);
        t.writeUInt16LE(t.length, 0);
        return t;
      }),
    ).toThrow(DecodeError);
  });
});
