import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ControlCommand,
  ControlError,
  ControlErrorCode,
  type ControlMessage,
  decodeControlFrame,
} from "../../protocol/control.js";
import { type DoeObject, type DoeProtocol, encodeDoeObject } from "../../protocol/doe.js";
import { type ConfigWidth, Doe, DoeCtrl, DoeStatus } from "../../protocol/pci.js";
import { FrameDecoder } from "../../protocol/socket.js";
import { AnnounceError, announce } from "../../src/device/announce.js";
import { startControlServer } from "../../src/device/control-server.js";
import { defaultDescription } from "../../src/device/description.js";
import { Mailbox } from "../../src/device/mailbox.js";
import { DeviceModel } from "../../src/device/model.js";
import { DoeError } from "../../src/doe/discovery.js";
import { ControlClient, DoeRegisterClient } from "../../src/host/control-client.js";
import { silentLogger } from "../../src/log.js";
import { FramedClient, type FramedServer } from "../../src/net/framed.js";
import { logLines } from "../support/log-lines.js";

const RID = 0x0100;
const CAP = 0x100;
const DISCOVERY: DoeProtocol = { vendorId: 1, type: 0 };
const ECHO: DoeProtocol = { vendorId: 1, type: 1 };
const SLOW: DoeProtocol = { vendorId: 1, type: 2 };

const dws = (buf: Buffer) => Array.from({ length: buf.length / 4 }, (_, i) => buf.readUInt32LE(i * 4));

describe("control endpoint (control wire) over TCP", () => {
  const description = defaultDescription();
  const mailbox = new Mailbox(description.functions[0]!.mailboxes[0]!.protocols, silentLogger);
  const lines = logLines();
  const model = new DeviceModel(description, [[mailbox]], [[{ host: "127.0.0.1", port: 2323 }]], lines.log);
  // The secured type stands in for a slow protocol: it answers only once the test releases it.
  let release: (() => void) | undefined;
  mailbox.register(ECHO, (req) => req.payload);
  mailbox.register(SLOW, (req) => new Promise<Buffer>((resolve) => (release = () => resolve(req.payload))));

  let server: FramedServer;
  let client: ControlClient;
  let doe: DoeRegisterClient;
  const status = () => client.cfgRead(RID, CAP + Doe.STATUS, 4);
  const reg = (off: number, value: number) => client.cfgWrite(RID, CAP + off, 4, value);
  /** Polls Status, as a host does (no interrupts here), until Data Object Ready; returns it. */
  const untilReady = async () => {
    let s = await status();
    while (!(s & DoeStatus.DATA_OBJECT_READY)) s = await status();
    return s;
  };

  beforeAll(async () => {
    server = await startControlServer({ model, host: "127.0.0.1", port: 0, log: silentLogger });
    client = await ControlClient.connect(server.address);
    doe = new DoeRegisterClient(client, RID, CAP);
    await doe.abort();
  });
  afterAll(async () => {
    client.close();
    await server.close();
  });

  it("serves the identity: which mailbox endpoint sits behind which DOE capability", async () => {
    expect(await client.identity()).toEqual({
      name: "doe-emu",
      bus: 1,
      mailboxes: [{ rid: RID, doeCapOffset: CAP, mailbox: 0, host: "127.0.0.1", port: 2323 }],
    });
  });

  it("reads all ones from a missing function and refuses a bad access without dropping the connection", async () => {
    expect(await client.cfgRead(0x0101, 0, 4)).toBe(0xffffffff);
    expect(await client.cfgRead(0x0200, 0, 2)).toBe(0xffff);
    expect(await client.cfgRead(RID, 0, 2)).toBe(0x1b36);
    const refused = await client.cfgRead(RID, 0, 3 as ConfigWidth).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ControlError);
    expect((refused as ControlError).code).toBe(ControlErrorCode.BAD_WIDTH);
    await expect(client.cfgRead(RID, 2, 4)).rejects.toMatchObject({ code: ControlErrorCode.MISALIGNED });
    expect(await client.cfgRead(RID, 0, 4)).toBe(0xde001b36);
  });

  it("runs a CFG_BATCH in order as single accesses would, and a refused one not at all", async () => {
    const cacheLine = 0x0c;
    const [ids, before, after] = await client.cfgBatch([
      { op: "read", rid: RID, offset: 0, width: 2, count: 2 },
      { op: "read", rid: RID, offset: cacheLine, width: 1, count: 1 },
      { op: "write", rid: RID, offset: cacheLine, width: 1, value: 0x10 },
      { op: "read", rid: RID, offset: cacheLine, width: 1, count: 1 },
    ]);
    expect([ids!.readUInt32LE(0), before![0], after![0]]).toEqual([0xde001b36, 0, 0x10]);
    const refused = client.cfgBatch([
      { op: "write", rid: RID, offset: cacheLine, width: 1, value: 0x20 },
      { op: "read", rid: RID, offset: 0xffe, width: 4, count: 1 },
    ]);
    await expect(refused).rejects.toMatchObject({ code: ControlErrorCode.OUT_OF_RANGE });
    expect(await client.cfgRead(RID, cacheLine, 1)).toBe(0x10);
    await client.cfgWrite(RID, cacheLine, 1, 0);
  });

  it("answers a malformed or misdirected frame with ERROR, echoing its tag", async () => {
    const raw = await FramedClient.connect(server.address);
    const replies: ControlMessage[] = [];
    for (const [command, payload] of [
      [ControlCommand.CFG_READ, Buffer.from([0, 1])],
      [ControlCommand.CFG_READ_RSP, Buffer.alloc(4)],
    ] as const) {
      const frame = await raw.request({ command, transport: 0xabcd, payload });
      expect(frame.transport).toBe(0xabcd);
      replies.push(decodeControlFrame(frame));
    }
    expect(replies.map((r) => r.kind === "error" && r.code)).toEqual([
      ControlErrorCode.MALFORMED,
      ControlErrorCode.UNEXPECTED,
    ]);
    raw.close();
  });

  it("runs DOE discovery through the registers: write DWs, Go, poll, read and ack", async () => {
    const found = await doe.discover();
    expect(found).toEqual([DISCOVERY, ECHO, SLOW]);
  });

  it("exposes each step at register level, and an ack past the end sets Error", async () => {
    const request = encodeDoeObject({ ...ECHO, payload: Buffer.from("0123456789ab") });
    for (const dw of dws(request)) await reg(Doe.WRITE, dw);
    expect(await status()).toBe(0); // nothing happens before Go
    await reg(Doe.CTRL, DoeCtrl.GO);
    expect(await untilReady()).toBe(DoeStatus.DATA_OBJECT_READY);
    const got: number[] = [];
    for (let i = 0; i < 5; i++) {
      got.push(await client.cfgRead(RID, CAP + Doe.READ, 4));
      await reg(Doe.READ, 0);
    }
    expect(got).toEqual(dws(request)); // the echo: same header, same payload
    expect(await status()).toBe(0); // the last ack reset the mailbox
    expect(await client.cfgRead(RID, CAP + Doe.READ, 4)).toBe(0);
    await reg(Doe.READ, 0);
    expect(await status()).toBe(DoeStatus.ERROR);
    await expect(doe.exchange({ ...ECHO, payload: Buffer.alloc(4) })).rejects.toThrow(DoeError);
    await doe.abort();
    expect(await status()).toBe(0);
  });

  const echo = async (payload: string): Promise<DoeObject> =>
    doe.exchange({ ...ECHO, payload: Buffer.from(payload) });

  it("Abort after part of an object drops the DWs written so far", async () => {
    const request = dws(encodeDoeObject({ ...ECHO, payload: Buffer.from("partial object") }));
    for (const dw of request.slice(0, 3)) await reg(Doe.WRITE, dw);
    await doe.abort();
    // Had the 3 DWs stayed, this object's DW count would not match its Length and it would be discarded.
    expect((await echo("next")).payload.toString()).toBe("next");
  });

  it("Abort while a response is half read clears Ready and drops the rest", async () => {
    for (const dw of dws(encodeDoeObject({ ...ECHO, payload: Buffer.from("half-read response") })))
      await reg(Doe.WRITE, dw);
    await reg(Doe.CTRL, DoeCtrl.GO);
    await untilReady();
    for (let i = 0; i < 3; i++) {
      await client.cfgRead(RID, CAP + Doe.READ, 4);
      await reg(Doe.READ, 0);
    }
    await reg(Doe.CTRL, DoeCtrl.ABORT);
    expect(await status()).toBe(0);
    expect(await client.cfgRead(RID, CAP + Doe.READ, 4)).toBe(0);
    expect((await echo("after")).payload.toString()).toBe("after\0\0\0");
  });

  it("Abort while Busy drops the response that arrives later", async () => {
    for (const dw of dws(encodeDoeObject({ ...SLOW, payload: Buffer.from("slow") })))
      await reg(Doe.WRITE, dw);
    await reg(Doe.CTRL, DoeCtrl.GO);
    expect(await status()).toBe(DoeStatus.BUSY);
    await reg(Doe.CTRL, DoeCtrl.ABORT);
    expect(await status()).toBe(0);
    release?.();
    // The mailbox takes one object at a time: once a later one is answered, the slow one's response
    // has come back to the registers (and been dropped).
    await mailbox.exchange(encodeDoeObject({ ...ECHO, payload: Buffer.alloc(4) }), "test");
    expect(await status()).toBe(0);
    expect((await echo("fresh")).payload.toString()).toBe("fresh\0\0\0");
  });

  it("discards an object whose DW count differs from its Length: no Busy, no Ready", async () => {
    const request = dws(encodeDoeObject({ ...ECHO, payload: Buffer.alloc(8) }));
    for (const dw of request.slice(0, -1)) await reg(Doe.WRITE, dw);
    const discarded = lines.next("DOE object discarded: DW count differs from its Length");
    await reg(Doe.CTRL, DoeCtrl.GO);
    await discarded; // at Go, so the mailbox never sees it and no response is coming
    expect(await status()).toBe(0);
    expect((await echo("ok")).payload.toString()).toBe("ok\0\0");
  });

  it("an object the mailbox discards gets no response and the driver times out", async () => {
    const quick = new DoeRegisterClient(client, RID, CAP, { timeoutMs: 50 });
    await expect(quick.exchange({ vendorId: 0x1234, type: 7, payload: Buffer.alloc(4) })).rejects.toThrow(
      /no response/,
    );
    expect(await status()).toBe(0);
    expect((await echo("still fine")).payload.toString()).toBe("still fine\0\0");
  });
});

describe("hotplug announce", () => {
  const description = defaultDescription();
  const mailbox = new Mailbox(description.functions[0]!.mailboxes[0]!.protocols, silentLogger);
  const model = new DeviceModel(description, [[mailbox]], [[{ host: "127.0.0.1", port: 2323 }]]);
  /** A stand-in host's hotplug port serving each connection with `serve`, and the device announced to it. */
  const announceTo = async (serve: (socket: net.Socket) => void) => {
    const host = net.createServer(serve);
    await new Promise<void>((r) => host.listen(0, "127.0.0.1", r));
    const port = (host.address() as net.AddressInfo).port;
    const handle = await announce({
      host: { host: "127.0.0.1", port },
      control: { host: "127.0.0.1", port: 4242 },
      model,
    });
    return { handle, closeHost: () => new Promise((r) => host.close(r)) };
  };

  it("connects to the host's hotplug port, sends ANNOUNCE, and closing the connection is the removal", async () => {
    const received: ControlMessage[] = [];
    let gotAnnounce!: () => void;
    const announced = new Promise<void>((r) => (gotAnnounce = r));
    let removed!: () => void;
    const gone = new Promise<void>((r) => (removed = r));
    const { handle, closeHost } = await announceTo((socket) => {
      const decoder = new FrameDecoder();
      socket.on("data", (chunk) => {
        for (const frame of decoder.push(chunk)) received.push(decodeControlFrame(frame));
        gotAnnounce();
      });
      socket.on("close", () => removed());
    });
    await announced;
    expect(received).toEqual([
      { kind: "announce", control: { host: "127.0.0.1", port: 4242 }, identity: model.identity() },
    ]);
    handle.close();
    await gone;
    await handle.closed;
    await closeHost();
  });

  it("announces again when the host closes the connection, with growing back-off, until closed", async () => {
    const arrivals: number[] = [];
    // A host that refuses the device: it closes each announce connection once the ANNOUNCE is in.
    const { handle, closeHost } = await announceTo((socket) =>
      socket.once("data", () => {
        arrivals.push(Date.now());
        socket.destroy();
      }),
    );
    while (arrivals.length < 3) await new Promise((r) => setTimeout(r, 20));
    handle.close();
    await handle.closed;
    const [a, b, c] = arrivals as [number, number, number];
    // 200 ms, then 400 ms: a device the host refuses does not hammer it.
    expect(b - a).toBeGreaterThanOrEqual(190);
    expect(c - b).toBeGreaterThanOrEqual(390);
    await new Promise((r) => setTimeout(r, 1000));
    expect(arrivals).toHaveLength(3); // none after close()
    await closeHost();
  });

  it("reports an unreachable host as an AnnounceError", async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r)); // a port nobody listens on any more
    const failed = announce({
      host: { host: "127.0.0.1", port },
      control: { host: "127.0.0.1", port: 1 },
      model,
    });
    await expect(failed).rejects.toThrow(AnnounceError);
    await expect(failed).rejects.toThrow(/hotplug announce to host 127\.0\.0\.1:\d+ failed/);
  });
});
