/**
 * What SPDM signs (DSP0274 1.2 §15 signature generation, over the CHALLENGE_AUTH, MEASUREMENTS and
 * KEY_EXCHANGE/FINISH transcripts). Versions are the wire byte (major << 4 | minor).
 * 1.0/1.1 sign the transcript itself (the asymmetric algorithm hashes it with the negotiated hash).
 * 1.2+ sign SigningContext (100 bytes) || Hash(transcript), hashed once more by the algorithm, as
 * libspdm 1e16c60f does for ECDSA and RSA. EdDSA signs those bytes unhashed (see asymSign for
 * Ed448's EdDSA context, which libspdm adds and node 20 cannot).
 */
import type { KeyObject } from "node:crypto";
import { type AsymAlgo, asymSign, asymVerify, type HashAlgo, hash } from "../crypto/suites.js";

export const SigningContext = {
  CHALLENGE_AUTH: "responder-challenge_auth signing",
  MUT_CHALLENGE_AUTH: "requester-challenge_auth signing",
  MEASUREMENTS: "responder-measurements signing",
  KEY_EXCHANGE_RSP: "responder-key_exchange_rsp signing",
  FINISH: "requester-finish signing",
  ENDPOINT_INFO: "responder-endpoint_info signing",
  MUT_ENDPOINT_INFO: "requester-endpoint_info signing",
} as const;
export type SigningContextName = keyof typeof SigningContext;

const PREFIX_REPEAT = 4;
const CONTEXT_FIELD = 36;
export const SIGNING_CONTEXT_SIZE = 16 * PREFIX_REPEAT + CONTEXT_FIELD;

/** "dmtf-spdm-v1.X.*" four times, then the context string right-aligned in a zero-filled 36 bytes. */
export function signingContext(version: number, context: SigningContextName): Buffer {
  const out = Buffer.alloc(SIGNING_CONTEXT_SIZE);
  const prefix = `dmtf-spdm-v${version >> 4}.${version & 0xf}.*`;
  for (let i = 0; i < PREFIX_REPEAT; i++) out.write(prefix, i * 16, "latin1");
  const text = SigningContext[context];
  out.write(text, SIGNING_CONTEXT_SIZE - text.length, "latin1");
  return out;
}

/** The bytes handed to the signature algorithm for a transcript (see the file comment). */
export function messageToSign(
  version: number,
  h: HashAlgo,
  context: SigningContextName,
  transcript: Uint8Array,
): Buffer {
  if (version < 0x12) return Buffer.from(transcript);
  return Buffer.concat([signingContext(version, context), hash(h, transcript)]);
}

export interface SigningSuite {
  version: number;
  hash: HashAlgo;
  asym: AsymAlgo;
}

/**
 * Transcripts by context: CHALLENGE_AUTH M1/M2 = A || B || C without the signature; MEASUREMENTS
 * L1/L2 = [A at 1.2+] || unsigned pairs || GET_MEASUREMENTS || MEASUREMENTS without the signature;
 * KEY_EXCHANGE_RSP = A || [D] || Hash(cert chain) || KEY_EXCHANGE || KEY_EXCHANGE_RSP up to the
 * signature; FINISH = that || rest of KEY_EXCHANGE_RSP || [Hash(req chain)] || FINISH up to the signature.
 */
export function signTranscript(
  suite: SigningSuite,
  key: KeyObject,
  context: SigningContextName,
  transcript: Uint8Array,
): Buffer {
  return asymSign(suite.asym, suite.hash, key, messageToSign(suite.version, suite.hash, context, transcript));
}

export function verifyTranscript(
  suite: SigningSuite,
  key: KeyObject,
  context: SigningContextName,
  transcript: Uint8Array,
  signature: Uint8Array,
): boolean {
  const msg = messageToSign(suite.version, suite.hash, context, transcript);
  return asymVerify(suite.asym, suite.hash, key, msg, signature);
}
