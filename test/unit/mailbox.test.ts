import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import {
  decodeDiscoveryResponse,
  decodeDoeObject,
  encodeDiscoveryRequest,
  encodeDoeObject,
} from "../../protocol/doe.js";
import { Mailbox } from "../../src/device/mailbox.js";
import { silentLogger, WarnLimiter } from "../../src/log.js";

const P = (type: number, vendorId = 1) => ({ vendorId, type });
const discovery = (index: number) =>
  encodeDoeObject({ ...P(0), payload: encodeDiscoveryRequest({ index, version: 0 }) });

describe("Mailbox engine", () => {
  it("answers discovery from its protocol list, and 0xFFFF/0xFF past its end", async () => {
    const mb = new Mailbox([P(0), P(1), P(2, 0x1e98)], silentLogger);
    const entries = [];
    for (let i = 0; i < 4; i++) {
      const rsp = await mb.exchange(discovery(i), "t");
      entries.push(decodeDiscoveryResponse(decodeDoeObject(rsp!).payload));
    }
    expect(entries).toEqual([
      { vendorId: 1, type: 0, nextIndex: 1 },
      { vendorId: 1, type: 1, nextIndex: 2 },
      { vendorId: 0x1e98, type: 2, nextIndex: 0 },
      { vendorId: 0xffff, type: 0xff, nextIndex: 0 },
    ]);
  });

  it("dispatches by vendor and type, echoing them in the response header", async () => {
    const mb = new Mailbox([P(0), P(1), P(2)], silentLogger);
    mb.register(P(1), (req) => Buffer.concat([Buffer.from("one:"), req.payload]));
    mb.register(P(2), () => Buffer.from("two!"));
    const one = decodeDoeObject(
      (await mb.exchange(encodeDoeObject({ ...P(1), payload: Buffer.from("abcd") }), "t"))!,
    );
    expect(one).toMatchObject({ vendorId: 1, type: 1 });
    expect(one.payload.toString()).toBe("one:abcd");
    const two = decodeDoeObject(
      (await mb.exchange(encodeDoeObject({ ...P(2), payload: Buffer.alloc(4) }), "t"))!,
    );
    expect(two.payload.toString()).toBe("two!");
  });

  it("discards unlisted protocols, bad headers, bad discovery payloads and handler failures", async () => {
    const mb = new Mailbox([P(0), P(1)], silentLogger);
    mb.register(P(1), () => {
      throw new Error("boom");
    });
    mb.register(P(2), () => Buffer.from("never"));
    expect(await mb.exchange(encodeDoeObject({ ...P(2), payload: Buffer.alloc(4) }), "t")).toBeUndefined();
    expect(await mb.exchange(encodeDoeObject({ ...P(1), payload: Buffer.alloc(4) }), "t")).toBeUndefined();
    const lying = discovery(0);
    lying.writeUInt32LE(4, 4);
    expect(await mb.exchange(lying, "t")).toBeUndefined();
    expect(await mb.exchange(encodeDoeObject({ ...P(0), payload: Buffer.alloc(8) }), "t")).toBeUndefined();
    // Still usable afterwards.
    expect(await mb.exchange(discovery(0), "t")).toBeDefined();
  });

  it("processes one object at a time, in arrival order, across origins", async () => {
    const mb = new Mailbox([P(0), P(1)], silentLogger);
    const log: string[] = [];
    let active = 0;
    mb.register(P(1), async (req) => {
      active++;
      expect(active).toBe(1);
      log.push(`start ${req.origin}`);
      await sleep(req.payload[0]!);
      log.push(`end ${req.origin}`);
      active--;
      return req.payload;
    });
    const send = (delay: number, origin: string) =>
      mb.exchange(encodeDoeObject({ ...P(1), payload: Buffer.from([delay, 0, 0, 0]) }), origin);
    const results = await Promise.all([send(20, "a"), send(1, "b"), send(5, "c")]);
    expect(results.every((r) => r !== undefined)).toBe(true);
    expect(log).toEqual(["start a", "end a", "start b", "end b", "start c", "end c"]);
    expect(mb.depth).toBe(0);
  });

  it("stays usable when a connection's done callback throws, for synchronous and asynchronous handlers", async () => {
    const mb = new Mailbox([P(0), P(1)], silentLogger);
    mb.register(P(1), async (req) => req.payload);
    const throwing = () => {
      throw new Error("writer gone");
    };
    mb.submit(discovery(0), "a", throwing);
    expect(mb.depth).toBe(0);
    mb.submit(encodeDoeObject({ ...P(1), payload: Buffer.alloc(4) }), "a", throwing);
    const after = await mb.exchange(encodeDoeObject({ ...P(1), payload: Buffer.from("next") }), "b");
    expect(decodeDoeObject(after!).payload.toString()).toBe("next");
    expect(mb.depth).toBe(0);
  });

  it("rate-limits the warnings a flood of bad objects causes", async () => {
    const lines: string[] = [];
    const log = pino({ level: "warn" }, { write: (l: string) => void lines.push(l) });
    const mb = new Mailbox([P(0)], log);
    for (let i = 0; i < 200; i++)
      await mb.exchange(encodeDoeObject({ ...P(5), payload: Buffer.alloc(4) }), "t");
    // Ten a second at most: 200 objects in well under the ~20 s it would take to log them all.
    expect(lines.length).toBeLessThan(50);
  });
});

describe("WarnLimiter", () => {
  it("lets perSecond lines through a second and counts the rest in the next line", () => {
    let now = 0;
    const lines: { msg: string; suppressed?: number }[] = [];
    const log = pino({ level: "warn" }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const limiter = new WarnLimiter(3, () => now);
    for (let i = 0; i < 10; i++) limiter.warn(log, {}, `bad ${i}`);
    expect(lines.map((l) => l.msg)).toEqual(["bad 0", "bad 1", "bad 2"]);
    now = 999;
    limiter.warn(log, {}, "still dropped");
    now = 1000;
    limiter.warn(log, {}, "next second");
    expect(lines.at(-1)).toMatchObject({ msg: "next second", suppressed: 8 });
    limiter.warn(log, {}, "and then");
    expect(lines.at(-1)?.suppressed).toBeUndefined();
  });
});
