/**
 * SecureSession, both roles: the recorded DMTF sessions replayed through a requester-role and a
 * responder-role session that derive every key themselves (from the recorded transcript and the DHE
 * secret or PSK) — each recorded record must re-seal to its wire bytes and open to its plaintext,
 * across handshakes and KEY_UPDATE — then the state machine, key update switching, backups, and
 * tampering against DSP0277's rules. Also the secured-message version opaque data codec.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DecodeError } from "../../protocol/errors.js";
import {
  composeSessionId,
  decodeOpaqueData,
  decodeSecuredMessageOpaque,
  encodeOpaqueData,
  encodeSupportedVersions,
  encodeVersionSelection,
} from "../../protocol/secured.js";
import { KeyUpdateOperation as Op } from "../../protocol/spdm/codes.js";
import { AEAD, type AeadAlgo, ASYM, HASH, hash } from "../../src/crypto/suites.js";
import { type KeyScheduleSuite, updateTrafficKeys } from "../../src/spdm/key-schedule.js";
import {
  SecureSession,
  type SecureSessionOptions,
  SessionError,
  type SessionRole,
} from "../../src/spdm/session.js";
import { sessionTranscriptPrefix } from "../../src/spdm/transcript.js";
import {
  type Capture,
  certChains,
  keyExchangeRspSignatureAt,
  type MessageFrame,
  readDecoded,
  readSecrets,
  SESSION_CAPTURES,
  secret,
  vcaTranscript,
} from "../vectors.js";

const DOE_HEADER = 8;
const HANDSHAKE_IN_THE_CLEAR = 1 << 15;
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

type Pair = Record<SessionRole, SecureSession>;

/** Replays one capture; returns what was checked. */
function replay(capture: Capture) {
  const { messages, negotiated: n } = readDecoded(capture);
  const secrets = readSecrets(capture);
  const suite: KeyScheduleSuite = { version: n.version, hash: n.hash, aead: n.aead };
  const H = HASH[n.hash].size;
  const vca = vcaTranscript(messages);
  const chains = certChains(messages);
  const digests = n.multiKey ? messages.find((m) => m.name === "DIGESTS")?.plain : undefined;
  const flags = (name: string) => messages.find((m) => m.name === name)!.plain.readUInt32LE(8);
  const inTheClear = (flags("GET_CAPABILITIES") & flags("CAPABILITIES") & HANDSHAKE_IN_THE_CLEAR) !== 0;

  const live = new Map<number, Pair>();
  let handshaking: Pair | undefined;
  let exchange: MessageFrame | undefined;
  let established = 0;
  let records = 0;
  let keyUpdates = 0;
  const both = (p: Pair, f: (s: SecureSession) => void) => {
    f(p.requester);
    f(p.responder);
  };
  /** Verify data `vd`: both roles compute it over TH so far, then TH takes it. */
  const verify = (p: Pair, vd: Buffer, signer: "request" | "response", what: string) =>
    both(p, (s) => {
      expect(s.verifyDataMatches(signer, vd), `${capture} ${what}`).toBe(true);
      s.addTranscript(vd);
    });
  /** A message ending in verify data: TH takes the rest first. */
  const verifyTail = (p: Pair, m: Buffer, signer: "request" | "response", what: string) => {
    both(p, (s) => s.addTranscript(m.subarray(0, -H)));
    verify(p, m.subarray(-H), signer, what);
  };

  for (const m of messages) {
    // A secured record: the sender's session must produce the recorded bytes, the receiver's must open them.
    if (m.doeType === 2) {
      const { sessionId, pad } = m.secured!;
      const p = live.get(sessionId) ?? handshaking!;
      expect(p.requester.sessionId, `frame ${m.index}`).toBe(sessionId);
      const [sender, receiver] = m.dir === "C2S" ? [p.requester, p.responder] : [p.responder, p.requester];
      const payload = m.wire!.subarray(DOE_HEADER);
      expect(hex(Buffer.concat([sender.seal(m.plain), Buffer.alloc(pad)])), `frame ${m.index}`).toBe(
        hex(payload),
      );
      expect(hex(receiver.open(payload)), `frame ${m.index}`).toBe(hex(m.plain));
      records++;
    }
    switch (m.name) {
      case "KEY_EXCHANGE":
      case "PSK_EXCHANGE":
        exchange = m;
        break;
      case "KEY_EXCHANGE_RSP":
      case "PSK_EXCHANGE_RSP": {
        const ex = exchange!;
        const group = `session${established + 1}.`;
        const kex = m.name === "KEY_EXCHANGE_RSP";
        const options = (role: SessionRole): SecureSessionOptions => ({
          role,
          kind: kex ? "KEY_EX" : "PSK",
          suite,
          reqSessionId: ex.plain.readUInt16LE(4),
          rspSessionId: m.plain.readUInt16LE(4),
          handshakeInTheClear: inTheClear,
          transcriptPrefix: kex
            ? sessionTranscriptPrefix(suite, { vca, digests, certChain: chains.get(ex.plain[3]! & 0xf)! })
            : sessionTranscriptPrefix(suite, { vca }),
        });
        const p = {
          requester: new SecureSession(options("requester")),
          responder: new SecureSession(options("responder")),
        };
        const sigEnd = kex
          ? keyExchangeRspSignatureAt(n, ex.plain, m.plain) + ASYM[n.asym].sigSize
          : m.plain.length - H;
        both(p, (s) => {
          s.addTranscript(ex.plain, m.plain.subarray(0, sigEnd));
          s.deriveHandshakeKeys(
            kex
              ? { dheSecret: secret(secrets, `${group}dhe_secret`) }
              : { psk: secret(secrets, `${group}psk`) },
          );
        });
        if (sigEnd < m.plain.length) verify(p, m.plain.subarray(sigEnd), "response", m.name);
        expect(hex(p.requester.trafficState("request")!.key)).toBe(
          hex(secret(secrets, `${group}request_handshake_key`)),
        );
        handshaking = p;
        break;
      }
      case "FINISH":
      case "PSK_FINISH":
        verifyTail(handshaking!, m.plain, "request", m.name);
        break;
      case "FINISH_RSP":
      case "PSK_FINISH_RSP": {
        const p = handshaking!;
        if (m.plain.length > 4) verifyTail(p, m.plain, "response", m.name);
        else both(p, (s) => s.addTranscript(m.plain));
        both(p, (s) => s.establish());
        established++;
        for (const dir of ["request", "response"] as const)
          expect(hex(p.responder.trafficState(dir)!.key)).toBe(
            hex(secret(secrets, `session${established}.${dir}_data_key`)),
          );
        live.set(p.requester.sessionId, p);
        handshaking = undefined;
        break;
      }
      case "KEY_UPDATE": {
        const p = live.get(m.secured!.sessionId)!;
        both(p, (s) => s.keyUpdate(m.plain[2]!));
        keyUpdates++;
        break;
      }
      case "END_SESSION_ACK": {
        const p = live.get(m.secured!.sessionId)!;
        both(p, (s) => s.end("END_SESSION"));
        live.delete(p.requester.sessionId);
        break;
      }
    }
  }
  return { records, established, keyUpdates, open: live.size };
}

// Secured records, sessions and KEY_UPDATE requests per capture
// (test/fixtures/vectors/<capture>_decoded.txt).
const EXPECTED: Record<string, { records: number; established: number; keyUpdates: number }> = {
  spdm12_keyex: { records: 1068, established: 2, keyUpdates: 4 },
  spdm13_keyex: { records: 1068, established: 2, keyUpdates: 4 },
  spdm12_psk: { records: 10, established: 1, keyUpdates: 2 },
  spdm13_psk: { records: 10, established: 1, keyUpdates: 2 },
  spdm13_app: { records: 196, established: 3, keyUpdates: 0 },
};

describe.each(SESSION_CAPTURES)("recorded %s replayed through SecureSession", (capture) => {
  it("every record re-seals to its wire bytes and opens to its message, with self-derived keys", () => {
    expect(replay(capture)).toEqual({ ...EXPECTED[capture], open: 0 });
  });
});

// ---- synthetic sessions -------------------------------------------------------------------------

const PSK = Buffer.from("TestPskData\0", "latin1");

/** A requester and a responder session through a PSK handshake (PSK_FINISH under handshake keys). */
function pair(
  aead: AeadAlgo = "AES_256_GCM",
  extra: Partial<SecureSessionOptions> = {},
  establish = true,
): Pair {
  const suite: KeyScheduleSuite = { version: 0x13, hash: "SHA_384", aead };
  const make = (role: SessionRole) =>
    new SecureSession({
      role,
      kind: "PSK",
      suite,
      reqSessionId: 0xffff,
      rspSessionId: 0xfffe,
      transcriptPrefix: Buffer.from("A"),
      ...extra,
    });
  const p = { requester: make("requester"), responder: make("responder") };
  for (const s of [p.requester, p.responder]) {
    s.addTranscript(Buffer.from("PSK_EXCHANGE"), Buffer.from("PSK_EXCHANGE_RSP"));
    s.deriveHandshakeKeys({ psk: PSK });
  }
  expect(p.requester.verifyDataMatches("response", p.responder.verifyData("response"))).toBe(true);
  if (!establish) return p;
  const finish = p.responder.open(p.requester.seal(Buffer.from("PSK_FINISH")));
  expect(finish.toString()).toBe("PSK_FINISH");
  expect(p.requester.open(p.responder.seal(Buffer.from("PSK_FINISH_RSP"))).toString()).toBe("PSK_FINISH_RSP");
  for (const s of [p.requester, p.responder]) s.establish();
  return p;
}

const msg = (code: number, p1 = 0, p2 = 0) => Buffer.from([0x13, code, p1, p2]);
const KEY_UPDATE = (op: number) => msg(0xe9, op, 0x5a);
const ACK = (op: number) => msg(0x69, op, 0x5a);

/** Both roles across the wire: `from` seals, the other opens; returns the record. */
function send(p: Pair, from: SessionRole, m: Buffer): Buffer {
  const record = p[from].seal(m);
  const to = from === "requester" ? p.responder : p.requester;
  expect(to.open(record)).toEqual(m);
  return record;
}

/** KEY_UPDATE `op` and its ACK, with the update applied by both between them (the shared rule). */
function keyUpdate(p: Pair, op: number): void {
  send(p, "requester", KEY_UPDATE(op));
  p.requester.keyUpdate(op);
  p.responder.keyUpdate(op);
  send(p, "responder", ACK(op));
}

describe("SecureSession", () => {
  it("composes the session ID as RspSessionID << 16 | ReqSessionID", () => {
    expect(composeSessionId(0xffff, 0xfffe)).toBe(0xfffeffff);
    expect(composeSessionId(0x0001, 0x8000)).toBe(0x80000001);
    expect(pair().requester.sessionId).toBe(0xfffeffff);
  });

  it("starts TH with A ‖ [D] ‖ Hash(CT) for KEY_EXCHANGE and A for PSK", () => {
    const s = { hash: "SHA_256" as const };
    const [a, d, ct] = [Buffer.from("A"), Buffer.from("D"), Buffer.from("chain")];
    expect(sessionTranscriptPrefix(s, { vca: a })).toEqual(a);
    expect(sessionTranscriptPrefix(s, { vca: a, certChain: ct })).toEqual(
      Buffer.concat([a, hash("SHA_256", ct)]),
    );
    expect(sessionTranscriptPrefix(s, { vca: a, digests: d, certChain: ct })).toEqual(
      Buffer.concat([a, d, hash("SHA_256", ct)]),
    );
  });

  it.each(Object.keys(AEAD) as AeadAlgo[])(
    "carries messages both ways with %s, handshake then data keys",
    (aead) => {
      const p = pair(aead, {}, false);
      expect(p.requester.state).toBe("handshaking");
      const hs = p.requester.trafficState("request")!;
      send(p, "requester", Buffer.from("PSK_FINISH"));
      send(p, "responder", Buffer.from("PSK_FINISH_RSP"));
      for (const s of [p.requester, p.responder]) s.establish();
      expect(p.requester.state).toBe("established");
      const data = p.requester.trafficState("request")!;
      expect(data.seq).toBe(0n);
      expect(data.key.equals(hs.key)).toBe(false);
      expect(data.key.length).toBe(AEAD[aead].keySize);
      for (let i = 0; i < 5; i++) {
        send(p, "requester", randomBytes(i * 100));
        send(p, "responder", randomBytes(i * 100 + 1));
      }
      expect(p.responder.trafficState("response")!.seq).toBe(5n);
    },
  );

  it("allows each operation only in its states", () => {
    const p = pair("AES_256_GCM", {}, false);
    const fresh = new SecureSession({
      role: "requester",
      kind: "KEY_EX",
      suite: { version: 0x12, hash: "SHA_256", aead: "AES_128_GCM" },
      reqSessionId: 1,
      rspSessionId: 2,
      transcriptPrefix: Buffer.alloc(0),
    });
    const kind = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as SessionError).kind;
      }
      return "ok";
    };
    expect(kind(() => fresh.seal(Buffer.from("x")))).toBe("state");
    expect(kind(() => fresh.establish())).toBe("state");
    expect(kind(() => fresh.verifyData("request"))).toBe("state");
    expect(kind(() => fresh.deriveHandshakeKeys({ psk: PSK }))).toBe("state"); // KEY_EX takes a DHE secret
    expect(kind(() => p.requester.keyUpdate(Op.UpdateKey))).toBe("state");
    expect(kind(() => p.requester.exportMasterSecret)).toBe("state");
    p.requester.establish();
    expect(p.requester.exportMasterSecret.length).toBe(48);
    expect(kind(() => p.requester.addTranscript(Buffer.from("late")))).toBe("state");
    expect(kind(() => p.requester.establish())).toBe("state");
    p.requester.end("END_SESSION");
    p.requester.end("again"); // idempotent
    expect([p.requester.state, p.requester.endReason]).toEqual(["ended", "END_SESSION"]);
    for (const f of [() => p.requester.seal(Buffer.from("x")), () => p.requester.keyUpdate(Op.UpdateKey)])
      expect(kind(f)).toBe("state");
    expect(p.requester.trafficState("request")).toBeUndefined();
  });

  describe("KEY_UPDATE", () => {
    it("UpdateKey: the ACK goes under the unchanged response key, VerifyNewKey under the new request key", () => {
      const p = pair();
      send(p, "requester", msg(0xe8));
      const req0 = p.requester.trafficState("request")!;
      const rsp0 = p.responder.trafficState("response")!;
      send(p, "requester", KEY_UPDATE(Op.UpdateKey));
      for (const s of [p.requester, p.responder]) s.keyUpdate(Op.UpdateKey);
      // Response direction untouched: same key, sequence number continues.
      expect(p.responder.trafficState("response")).toEqual(rsp0);
      send(p, "responder", ACK(Op.UpdateKey));
      const req1 = p.requester.trafficState("request")!;
      const suite = p.requester.suite;
      expect(req1.secret).toEqual(
        updateTrafficKeys(suite, { secret: req0.secret, key: req0.key, iv: req0.iv }).secret,
      );
      expect(req1.seq).toBe(0n);
      expect(p.responder.keyUpdatePending).toBe(Op.UpdateKey);
      send(p, "requester", KEY_UPDATE(Op.VerifyNewKey));
      for (const s of [p.requester, p.responder]) s.keyUpdate(Op.VerifyNewKey);
      send(p, "responder", ACK(Op.VerifyNewKey));
      expect(p.responder.keyUpdatePending).toBeUndefined();
      expect(p.requester.trafficState("response")!.seq).toBe(rsp0.seq + 2n);
    });

    it("UpdateAllKeys: the ACK already goes under the new response key at sequence 0", () => {
      const p = pair();
      send(p, "responder", msg(0x68));
      const rsp0 = p.responder.trafficState("response")!;
      send(p, "requester", KEY_UPDATE(Op.UpdateAllKeys));
      for (const s of [p.requester, p.responder]) s.keyUpdate(Op.UpdateAllKeys);
      const rsp1 = p.responder.trafficState("response")!;
      expect(rsp1.seq).toBe(0n);
      expect(rsp1.key.equals(rsp0.key)).toBe(false);
      const ack = send(p, "responder", ACK(Op.UpdateAllKeys));
      // The old response key cannot open it: an observer without the update fails.
      const stale = pair();
      stale.requester.open(stale.responder.seal(msg(0x68)));
      expect(() => stale.requester.open(ack)).toThrow(SessionError);
      keyUpdate(p, Op.VerifyNewKey);
      send(p, "requester", msg(0xe8));
    });

    it("refuses an update while one awaits VerifyNewKey, VerifyNewKey alone, and unknown operations", () => {
      const p = pair();
      keyUpdate(p, Op.UpdateKey);
      const err = (f: () => void) => {
        try {
          f();
        } catch (e) {
          return `${(e as SessionError).kind}: ${(e as Error).message}`;
        }
        return "ok";
      };
      expect(err(() => p.responder.keyUpdate(Op.UpdateAllKeys))).toMatch(
        /^key-update: .*UpdateAllKeys while UpdateKey awaits VerifyNewKey/,
      );
      keyUpdate(p, Op.VerifyNewKey);
      expect(err(() => p.responder.keyUpdate(Op.VerifyNewKey))).toMatch(
        /^key-update: .*VerifyNewKey without a key update/,
      );
      expect(err(() => p.responder.keyUpdate(9))).toMatch(/^key-update: .*not an operation/);
      expect(p.responder.state).toBe("established");
    });

    it("a requester whose UpdateAllKeys got an ERROR opens it with the backup key and rolls back", () => {
      const p = pair();
      send(p, "requester", KEY_UPDATE(Op.UpdateAllKeys));
      p.requester.keyUpdate(Op.UpdateAllKeys); // the responder refuses and does not update
      const error = msg(0x7f, 0x01);
      expect(p.requester.open(p.responder.seal(error))).toEqual(error);
      expect(p.requester.keyUpdatePending).toBeUndefined();
      send(p, "requester", msg(0xe8)); // old request key again, in step with the responder
      send(p, "responder", msg(0x68));
    });

    it("a responder whose ACK was lost accepts the old request key and rolls back", () => {
      const p = pair();
      send(p, "requester", KEY_UPDATE(Op.UpdateKey));
      p.responder.keyUpdate(Op.UpdateKey);
      p.responder.seal(ACK(Op.UpdateKey)); // never arrives; the requester keeps its keys
      send(p, "requester", msg(0xe8));
      expect(p.responder.keyUpdatePending).toBeUndefined();
    });
  });

  describe("tampering (DSP0277: a record that fails authentication terminates the session)", () => {
    const flip = (b: Buffer, at: number) => {
      const c = Buffer.from(b);
      c[at < 0 ? c.length + at : at]! ^= 0x01;
      return c;
    };
    const cases: [string, (r: Buffer) => Buffer][] = [
      ["ciphertext", (r) => flip(r, 8)],
      ["tag", (r) => flip(r, -1)],
      ["length (additional data)", (r) => flip(r, 4)],
    ];
    it.each(cases)("a flipped bit in the %s ends the session", (_what, tamper) => {
      const p = pair();
      const record = p.requester.seal(msg(0xe8));
      const e = (() => {
        try {
          p.responder.open(tamper(record));
        } catch (x) {
          return x as SessionError;
        }
      })();
      expect(e).toBeInstanceOf(SessionError);
      expect(e!.kind).toMatch(/^(auth|malformed)$/);
      expect(p.responder.state).toBe("ended");
      expect(() => p.responder.open(record)).toThrow(/not allowed while ended/);
    });

    it("a record for another session ID is refused without touching this session", () => {
      const p = pair();
      const record = p.requester.seal(msg(0xe8));
      const other = Buffer.from(record);
      other.writeUInt32LE(0xfffdffff, 0);
      expect(() => p.responder.open(other)).toThrow(expect.objectContaining({ kind: "session-id" }));
      expect(p.responder.state).toBe("established");
      expect(p.responder.open(record)).toEqual(msg(0xe8));
    });

    it("a wrong sequence number (replayed or reordered record) ends the session", () => {
      const p = pair();
      const first = p.requester.seal(msg(0xe8));
      const second = p.requester.seal(msg(0xe8, 1));
      expect(() => p.responder.open(second)).toThrow(expect.objectContaining({ kind: "auth" }));
      expect(p.responder.state).toBe("ended");
      const q = pair();
      const r = q.requester.seal(msg(0xe8));
      q.responder.open(r);
      expect(() => q.responder.open(r)).toThrow(expect.objectContaining({ kind: "auth" }));
      expect(first.length).toBe(second.length);
    });

    it("a truncated record is malformed and ends the session", () => {
      const p = pair();
      const record = p.requester.seal(msg(0xe8));
      expect(() => p.responder.open(record.subarray(0, 10))).toThrow(
        expect.objectContaining({ kind: "malformed" }),
      );
      expect(p.responder.state).toBe("ended");
    });

    it("a failure with a backup key pending still ends the session", () => {
      const p = pair();
      keyUpdate(p, Op.UpdateKey);
      expect(() => p.responder.open(flip(p.requester.seal(msg(0xe8)), -1))).toThrow(
        expect.objectContaining({ kind: "auth" }),
      );
      expect(p.responder.state).toBe("ended");
    });
  });

  it("ends the session instead of reusing a sequence number", () => {
    const p = pair("AES_128_GCM", { maxSequenceNumber: 2n });
    for (let i = 0; i < 3; i++) send(p, "requester", msg(0xe8));
    expect(() => p.requester.seal(msg(0xe8))).toThrow(expect.objectContaining({ kind: "sequence" }));
    expect(p.requester.state).toBe("ended");
  });

  it("is overdue after twice the heartbeat period without a record", () => {
    let now = 0;
    const p = pair("AES_256_GCM", { heartbeatPeriod: 5, now: () => now });
    now = 10_000;
    expect(p.responder.heartbeatOverdue()).toBe(false);
    now = 10_001;
    expect(p.responder.heartbeatOverdue()).toBe(true);
    send(p, "requester", msg(0xe8));
    expect(p.responder.heartbeatOverdue()).toBe(false);
    expect(pair().responder.heartbeatOverdue(1e12)).toBe(false); // period 0: no heartbeat
  });
});

describe("secured-message version opaque data", () => {
  // The bytes DMTF's requester and responder exchanged (recorded in test/fixtures/vectors/).
  const REQUEST = "0100000000000900010103001000110012000000";
  const SELECTION = "010000000000040001000012";

  it("encodes and decodes DMTF's recorded supported-versions and selection elements", () => {
    expect(hex(encodeSupportedVersions(0x13, [0x10, 0x11, 0x12]))).toBe(REQUEST);
    expect(hex(encodeVersionSelection(0x12, 0x12))).toBe(SELECTION);
    expect(decodeSecuredMessageOpaque(0x13, Buffer.from(REQUEST, "hex"))).toEqual({
      supported: [0x10, 0x11, 0x12],
    });
    expect(decodeSecuredMessageOpaque(0x12, Buffer.from(SELECTION, "hex"))).toEqual({ selected: 0x12 });
  });

  it("uses the DSP0277 header at SPDM 1.1", () => {
    const b = encodeVersionSelection(0x11, 0x11);
    expect(hex(b.subarray(0, 8))).toBe("46544d4401010000");
    expect(decodeSecuredMessageOpaque(0x11, b)).toEqual({ selected: 0x11 });
    expect(() => decodeSecuredMessageOpaque(0x12, b)).toThrow(DecodeError);
  });

  it("skips other elements and keeps vendor IDs", () => {
    const vendor = { id: 3, vendorId: Buffer.from([1, 0]), data: Buffer.from("xyz") };
    const selection = decodeOpaqueData(0x12, Buffer.from(SELECTION, "hex"));
    const both = encodeOpaqueData(0x12, [vendor, ...selection]);
    expect(decodeOpaqueData(0x12, both)[0]).toEqual(vendor);
    expect(decodeSecuredMessageOpaque(0x12, both)).toEqual({ selected: 0x12 });
  });

  it.each([
    ["misaligned", "01000000000003000100120000"],
    ["no elements", "00000000"],
    ["non-zero padding", "0100000000000300010012ff"],
    ["bytes after the elements", "01000000000004000100001200000000"],
    ["an unknown registry", "010000000c00040001000012"],
    ["a 1-byte selection", "010000000000030001001200"],
  ])("rejects %s with DecodeError", (what, h) => {
    const f = () => decodeSecuredMessageOpaque(0x12, Buffer.from(h, "hex"));
    expect(f, what).toThrow(DecodeError);
  });
});
