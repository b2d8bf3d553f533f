/**
 * The requester's PSK session against DMTF's recorded responder (spdm13_psk, spdm12_psk:
 * spdm_requester_emu --exe_conn VCA --exe_session PSK,HEARTBEAT,KEY_UPDATE). A PSK session depends
 * only on the PSK, the transcript and the RequesterContext, so with the recorded context fed back
 * through `randomBytes` our requester must send every record byte for byte as DMTF's did — PSK_FINISH
 * under the handshake keys, HEARTBEAT, KEY_UPDATE UpdateAllKeys, VerifyNewKey, END_SESSION — and
 * accept every recorded answer. Then single changes to the recording must fail precisely.
 */
import { describe, expect, it } from "vitest";
import { KeyUpdateOperation as Op } from "../../protocol/spdm/codes.js";
import { authenticate } from "../../src/requester/connection.js";
import { SpdmRequester, SpdmRequesterError, type SpdmTransport } from "../../src/spdm/requester.js";
import { endSession, heartbeat, keyUpdate, openSession } from "../../src/spdm/requester-session.js";
import { type Capture, type Frame, readDecoded } from "../vectors.js";

const DOE_HEADER = 8;

interface Exchange {
  type: number;
  request: Buffer;
  response: Buffer;
}

/** The SPDM (type 1) and secured (type 2) exchanges of a capture as DOE payloads. */
function exchanges(capture: Capture): { pairs: Exchange[]; frames: Frame[] } {
  const frames = readDecoded(capture).frames.filter((f) => f.doeType === 1 || f.doeType === 2);
  const pairs: Exchange[] = [];
  for (let i = 0; i < frames.length; i += 2) {
    const [c2s, s2c] = [frames[i]!, frames[i + 1]!];
    expect([c2s.dir, s2c.dir, c2s.doeType]).toEqual(["C2S", "S2C", s2c.doeType]);
    pairs.push({
      type: c2s.doeType!,
      request: c2s.wire!.subarray(DOE_HEADER),
      response: Buffer.from(s2c.wire!.subarray(DOE_HEADER)),
    });
  }
  return { pairs, frames };
}

/** Answers with the recording; every request (SPDM message or secured record) must be the recorded one. */
class Replay implements SpdmTransport {
  i = 0;
  constructor(private readonly pairs: Exchange[]) {}
  private next(type: number, request: Buffer): Buffer {
    const p = this.pairs[this.i++];
    if (!p) throw new Error("the recording has no more exchanges");
    if (p.type !== type)
      throw new Error(`exchange ${this.i - 1} is DOE type ${p.type}, we sent type ${type}`);
    // Recorded requests carry DOE padding; ours stop at the message or record.
    const padded = Buffer.concat([request, Buffer.alloc(p.request.length - request.length)]);
    if (!padded.equals(p.request))
      throw new Error(
        `exchange ${this.i - 1}: sent ${request.toString("hex")}, recorded ${p.request.toString("hex")}`,
      );
    return p.response;
  }
  async send(request: Buffer) {
    return this.next(1, request);
  }
  async sendSecured(record: Buffer) {
    return this.next(2, record);
  }
}

/** The recorded RequesterContext of PSK_EXCHANGE, then the KEY_UPDATE tags, in the order the requester draws them. */
function recordedRandom(frames: Frame[]): (size: number) => Buffer {
  const queue: Buffer[] = [];
  for (const f of frames) {
    if (f.dir !== "C2S") continue;
    if (f.name === "PSK_EXCHANGE") {
      const hint = f.plain!.readUInt16LE(6);
      queue.push(f.plain!.subarray(12 + hint, 12 + hint + f.plain!.readUInt16LE(8)));
    }
    if (f.name === "KEY_UPDATE") queue.push(f.plain!.subarray(3, 4));
  }
  return (size) => {
    const next = queue.shift();
    if (next?.length !== size)
      throw new Error(`randomBytes(${size}): the recording has ${next?.length ?? "nothing"}`);
    return Buffer.from(next);
  };
}

/** spdm-emu's requester as recorded: its default capabilities masked to 1.2/1.3 by libspdm 1e16c60f, VCA only. */
const CAPABILITIES: Record<string, number> = { spdm12_psk: 0x0002f7c6, spdm13_psk: 0x0882f7c6 };

async function replayFlow(capture: Capture, edit?: (pairs: Exchange[]) => void) {
  const { pairs, frames } = exchanges(capture);
  edit?.(pairs);
  const replay = new Replay(pairs);
  const r = new SpdmRequester(replay, {
    capabilities: CAPABILITIES[capture],
    versions: [readDecoded(capture).negotiated.version],
    connectionSteps: [],
    randomBytes: recordedRandom(frames),
  });
  const summary = await authenticate(r);
  const { session, measurementSummaryHash, pskFinish } = await openSession(r, { kind: "PSK" });
  const established = session.state;
  await heartbeat(r, session);
  await keyUpdate(r, session, Op.UpdateAllKeys);
  await endSession(r, session, 1);
  return {
    replay,
    pairs,
    summary,
    session,
    established,
    measurementSummaryHash,
    pskFinish,
    counts: r.counts,
  };
}

describe.each(["spdm13_psk", "spdm12_psk"] as const)("PSK session against the recorded %s", (capture) => {
  it("sends every recorded request and record byte for byte and accepts every answer", async () => {
    const out = await replayFlow(capture);
    expect(out.replay.i).toBe(out.pairs.length);
    expect(out.established).toBe("established");
    expect(out.session.state).toBe("ended");
    expect(out.session.sessionId).toBe(0xffffffff);
    expect(out.session.securedMessageVersion).toBe(0x12);
    expect(out.session.heartbeatPeriod).toBe(0xf0);
    expect(out.pskFinish).toBe(true);
    expect(out.measurementSummaryHash.length).toBe(48);
    expect(out.summary.certificateChain).toBeUndefined();
    expect(out.counts).toEqual({ exchanges: 9, secured: 5 });
  });

  const flipLast = (back: number) => (pairs: Exchange[], at: number) => {
    const r = pairs[at]!.response;
    r[r.length - back]! ^= 1;
  };
  /** Index of the exchange whose request is named `name` in the recording. */
  const at = (name: string) => {
    const { pairs, frames } = exchanges(capture);
    const i = frames.filter((f) => f.dir === "C2S").findIndex((f) => f.name === name);
    expect(i).toBeGreaterThanOrEqual(0);
    return Math.min(i, pairs.length - 1);
  };

  it.each([
    [
      "PSK_EXCHANGE_RSP's ResponderVerifyData",
      "PSK_EXCHANGE",
      1,
      "session",
      /PSK_EXCHANGE_RSP ResponderVerifyData does not match/,
    ],
    [
      "PSK_EXCHANGE_RSP's opaque data",
      "PSK_EXCHANGE",
      49,
      "session",
      /OpaqueData selects secured-message version 1\.3, we offered 1\.0, 1\.1, 1\.2/,
    ],
    [
      "the PSK_FINISH_RSP record's tag",
      "PSK_FINISH",
      1,
      "session",
      /fails authentication .*session terminated/,
    ],
    ["the KEY_UPDATE_ACK record's ciphertext", "KEY_UPDATE", 17, "session", /fails authentication/],
  ])("fails on a flipped bit in %s", async (_what, name, back, kind, reason) => {
    const e = await replayFlow(capture, (pairs) => flipLast(back)(pairs, at(name))).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SpdmRequesterError);
    expect((e as SpdmRequesterError).kind).toBe(kind);
    expect((e as Error).message).toMatch(reason);
  });
});
