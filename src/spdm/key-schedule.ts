/**
 * The SPDM session key schedule (DSP0274 §12) as libspdm 1e16c60f implements it. Derivation is the
 * same for requester and responder; each side picks the direction it sends or receives with.
 * Versions are the negotiated SPDM version byte (0x11..0x14); BinConcat uses it, not the DSP0277
 * version.
 */
import {
  AEAD,
  AEAD_IV_SIZE,
  type AeadAlgo,
  HASH,
  type HashAlgo,
  hash,
  hkdfExpand,
  hkdfExtract,
  hmac,
} from "../crypto/suites.js";

export interface KeyScheduleSuite {
  version: number;
  hash: HashAlgo;
  aead: AeadAlgo;
}

export type Direction = "request" | "response";

/** A traffic secret and the AEAD key/IV derived from it. */
export interface TrafficKeys {
  secret: Buffer;
  key: Buffer;
  iv: Buffer;
}

export interface HandshakeKeys {
  handshakeSecret: Buffer;
  request: TrafficKeys & { finishedKey: Buffer };
  response: TrafficKeys & { finishedKey: Buffer };
}

export interface DataKeys {
  /** Salt for the master secret ("derived"). */
  salt1: Buffer;
  masterSecret: Buffer;
  exportMasterSecret: Buffer;
  request: TrafficKeys;
  response: TrafficKeys;
}

/** HKDF info: u16le(length) || "spdmM.m " || label || context. */
export function binConcat(version: number, length: number, label: string, context?: Uint8Array): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16LE(length, 0);
  const text = Buffer.from(`spdm${version >> 4}.${version & 0xf} ${label}`, "latin1");
  return Buffer.concat(context ? [head, text, context] : [head, text]);
}

function expandLabel(
  s: KeyScheduleSuite,
  secret: Uint8Array,
  label: string,
  length: number,
  context?: Uint8Array,
) {
  return hkdfExpand(s.hash, secret, binConcat(s.version, length, label, context), length);
}

/** AEAD key and IV from a handshake, data or updated secret. */
export function trafficKeys(s: KeyScheduleSuite, secret: Buffer): TrafficKeys {
  return {
    secret,
    key: expandLabel(s, secret, "key", AEAD[s.aead].keySize),
    iv: expandLabel(s, secret, "iv", AEAD_IV_SIZE),
  };
}

/** KEY_UPDATE: the next secret of one direction ("traffic upd") and its key/IV. */
export function updateTrafficKeys(s: KeyScheduleSuite, current: TrafficKeys): TrafficKeys {
  const h = HASH[s.hash].size;
  return trafficKeys(s, expandLabel(s, current.secret, "traffic upd", h));
}

/**
 * The HKDF-Extract salt for the handshake secret: zero for DHE; for PSK zero up to 1.2 and
 * 0xFF×H from 1.3 on (libspdm, DMTF/libspdm#2288; confirmed by the spdm13_psk vectors).
 */
export function handshakeSalt(s: KeyScheduleSuite, input: "dhe" | "psk"): Buffer {
  return Buffer.alloc(HASH[s.hash].size, input === "psk" && s.version >= 0x13 ? 0xff : 0);
}

export type SessionSecretInput = { dheSecret: Uint8Array } | { psk: Uint8Array };

/** Handshake secret, both handshake secrets with their finished keys and AEAD keys; th1Hash = Hash(TH1). */
export function deriveHandshakeKeys(
  s: KeyScheduleSuite,
  input: SessionSecretInput,
  th1Hash: Uint8Array,
): HandshakeKeys {
  const h = HASH[s.hash].size;
  const ikm = "psk" in input ? input.psk : input.dheSecret;
  const handshakeSecret = hkdfExtract(s.hash, handshakeSalt(s, "psk" in input ? "psk" : "dhe"), ikm);
  const side = (label: string) => {
    const secret = expandLabel(s, handshakeSecret, label, h, th1Hash);
    return { ...trafficKeys(s, secret), finishedKey: expandLabel(s, secret, "finished", h) };
  };
  return { handshakeSecret, request: side("req hs data"), response: side("rsp hs data") };
}

/** Master secret and the data-phase secrets/keys; th2Hash = Hash(TH2). */
export function deriveDataKeys(
  s: KeyScheduleSuite,
  handshakeSecret: Uint8Array,
  th2Hash: Uint8Array,
): DataKeys {
  const h = HASH[s.hash].size;
  const salt1 = expandLabel(s, handshakeSecret, "derived", h);
  const masterSecret = hkdfExtract(s.hash, salt1, Buffer.alloc(h));
  const secret = (label: string) => expandLabel(s, masterSecret, label, h, th2Hash);
  return {
    salt1,
    masterSecret,
    exportMasterSecret: secret("exp master"),
    request: trafficKeys(s, secret("req app data")),
    response: trafficKeys(s, secret("rsp app data")),
  };
}

/** RequesterVerifyData / ResponderVerifyData: HMAC(finished key, Hash(transcript so far)). */
export function verifyData(s: KeyScheduleSuite, finishedKey: Uint8Array, transcript: Uint8Array): Buffer {
  return hmac(s.hash, finishedKey, hash(s.hash, transcript));
}
