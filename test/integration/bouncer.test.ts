import { EventEmitter, once } from "node:events";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  type DoeProtocol,
  decodeDoeObject,
  encodeDiscoveryRequest,
  encodeDoeObject,
} from "../../protocol/doe.js";
import { SocketCommand, TEST_CLIENT_HELLO, TEST_SERVER_HELLO, TransportType } from "../../protocol/socket.js";
import { Bouncer } from "../../src/host/bouncer.js";
import { silentLogger } from "../../src/log.js";
import { type Endpoint, FramedClient, type FramedConnection, FramedServer } from "../../src/net/framed.js";

/**
 * A stand-in mailbox endpoint that answers every object with its own name and echoes any other
 * command (kept in `oob`), or holds a frame when told to and emits "held" with the connection it
 * came on.
 */
async function fakeMailbox(name: string) {
  const held = new EventEmitter<{ held: [FramedConnection] }>();
  const oob: { command: number; payload: string }[] = [];
  let hold = false;
  const server = await FramedServer.listen({
    host: "127.0.0.1",
    port: 0,
    onConnection: (conn) =>
      conn.on("frame", (f) => {
        if (hold) return void held.emit("held", conn);
        if (f.command !== SocketCommand.NORMAL) {
          oob.push({ command: f.command, payload: f.payload.toString("hex") });
          return void conn.send({ ...f, payload: Buffer.alloc(0) });
        }
        const { vendorId, type } = decodeDoeObject(f.payload);
        conn.send({
          command: SocketCommand.NORMAL,
          transport: TransportType.PCI_DOE,
          payload: encodeDoeObject({ vendorId, type, payload: Buffer.from(name.padEnd(8)) }),
        });
      }),
  });
  return {
    server,
    held,
    oob,
    setHold: (h: boolean) => {
      hold = h;
    },
  };
}

const object = (p: DoeProtocol, payload = Buffer.alloc(4)) => encodeDoeObject({ ...p, payload });
const CMA = { vendorId: 1, type: 1 };
const SECURED = { vendorId: 1, type: 2 };
const DISCOVERY = { vendorId: 1, type: 0 };
const { OOB_ENCAP_KEY_UPDATE: KEY_UPDATE, OOB_ENCAP_ENDPOINT_INFO: ENDPOINT_INFO } = SocketCommand;

async function requester(at: Endpoint) {
  const c = await FramedClient.connect(at, { timeoutMs: 3000 });
  const send = async (command: number, payload: Buffer = Buffer.alloc(0)) =>
    c.request({ command, transport: TransportType.PCI_DOE, payload });
  /** The mailbox name in the answer, "" for an empty NORMAL reply. */
  const normal = async (payload: Buffer) => {
    const rsp = await send(SocketCommand.NORMAL, payload);
    expect(rsp.command).toBe(SocketCommand.NORMAL);
    return rsp.payload.length === 0 ? "" : decodeDoeObject(rsp.payload).payload.toString().trim();
  };
  return { c, send, normal };
}

describe("bouncer", () => {
  let cma: Awaited<ReturnType<typeof fakeMailbox>>;
  let secured: Awaited<ReturnType<typeof fakeMailbox>>;
  let both: Bouncer;
  let cmaOnly: Bouncer;
  let upstreamErrors = 0;

  beforeAll(async () => {
    cma = await fakeMailbox("cma");
    secured = await fakeMailbox("secured");
    const common = {
      host: "127.0.0.1",
      timeoutMs: 300,
      log: silentLogger,
      onUpstreamError: () => upstreamErrors++,
    };
    both = await Bouncer.start({
      ...common,
      targets: { cma: cma.server.address, secured: secured.server.address },
    });
    cmaOnly = await Bouncer.start({ ...common, targets: { cma: cma.server.address, secured: undefined } });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  afterAll(async () => {
    await Promise.all([both.close(), cmaOnly.close(), cma.server.close(), secured.server.close()]);
  });

  it("answers TEST itself and routes discovery and type 1 to the CMA mailbox, type 2 to the secured one", async () => {
    const r = await requester(both.address);
    const hello = await r.send(SocketCommand.TEST, TEST_CLIENT_HELLO);
    expect(hello.command).toBe(SocketCommand.TEST);
    expect(hello.payload.equals(TEST_SERVER_HELLO)).toBe(true);
    const discovery = encodeDoeObject({
      ...DISCOVERY,
      payload: encodeDiscoveryRequest({ index: 0, version: 0 }),
    });
    expect(await r.normal(discovery)).toBe("cma");
    expect(await r.normal(object(CMA))).toBe("cma");
    expect(await r.normal(object(SECURED))).toBe("secured");
    expect(await r.normal(object(CMA))).toBe("cma");
    expect(both.stats.forwarded).toBe(4);
    r.c.close();
  });

  it("answers an invalid request and a missing mailbox with an empty NORMAL reply, counted apart", async () => {
    const r = await requester(cmaOnly.address);
    expect(await r.normal(object({ vendorId: 1, type: 3 }))).toBe("");
    expect(await r.normal(object({ vendorId: 0x1e98, type: 1 }))).toBe("");
    expect(await r.normal(Buffer.from("not a DOE object"))).toBe("");
    expect(await r.normal(object(SECURED))).toBe("");
    // The connection stays usable after errors.
    expect(await r.normal(object(CMA))).toBe("cma");
    expect(cmaOnly.stats).toMatchObject({ invalidRequest: 3, missingMailbox: 1, upstreamError: 0 });
    r.c.close();
  });

  it("treats SHUTDOWN and CONTINUE as the end of the requester's connection only", async () => {
    for (const command of [SocketCommand.SHUTDOWN, SocketCommand.CONTINUE]) {
      const r = await requester(both.address);
      expect(await r.normal(object(CMA))).toBe("cma");
      expect((await r.send(command)).command).toBe(command);
      await expect(r.send(SocketCommand.TEST, TEST_CLIENT_HELLO)).rejects.toThrow(/closed/);
    }
    expect(cma.server.connections.size).toBe(0); // upstream connections went with them
    const again = await requester(both.address);
    expect(await again.normal(object(CMA))).toBe("cma"); // the mailbox is still there
    again.c.close();
  });

  it("answers an empty NORMAL reply when the mailbox dies or hangs mid-request, within the timeout", async () => {
    // The bounce timeout runs on a fake clock: it fires only when the test moves the clock.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const r = await requester(both.address);
    expect(await r.normal(object(SECURED))).toBe("secured");
    secured.setHold(true);
    const before = upstreamErrors;
    // The mailbox's process dies while the object is in flight: its sockets close. The clock stands
    // still, so the reply comes from the close, not from the timeout.
    let holding = once(secured.held, "held");
    const dying = r.normal(object(SECURED));
    const [conn] = await holding;
    conn.destroy();
    expect(await dying).toBe("");
    expect(both.stats.upstreamError).toBe(1);
    // A mailbox that holds the object: answered empty at the bounce timeout, not before.
    holding = once(secured.held, "held");
    const hung = r.normal(object(SECURED));
    await holding;
    await vi.advanceTimersByTimeAsync(299);
    expect(both.stats.upstreamError).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await hung).toBe("");
    expect(upstreamErrors - before).toBe(2);
    expect(both.stats.upstreamError).toBe(2);
    secured.setHold(false);
    expect(await r.normal(object(SECURED))).toBe("secured"); // reconnects
    r.c.close();
  });

  it("forwards OOB_ENCAP_KEY_UPDATE and OOB_ENCAP_ENDPOINT_INFO to the last object's mailbox, echoing after its echo; before any object, echoes them itself", async () => {
    const r = await requester(both.address);
    const session = Buffer.from("0100feff", "hex");
    const oob = async (command: number, payload?: Buffer) => {
      const rsp = await r.send(command, payload);
      expect(rsp).toMatchObject({ command, payload: Buffer.alloc(0) });
    };
    const seen = { cma: cma.oob.length, secured: secured.oob.length };
    const stats = { ...both.stats };
    // No SPDM connection yet: nothing to forward to.
    await oob(KEY_UPDATE, session);
    await oob(ENDPOINT_INFO);
    expect(cma.oob.length + secured.oob.length).toBe(seen.cma + seen.secured);
    // After a secured object, to the secured mailbox; after a CMA one, to the CMA mailbox.
    expect(await r.normal(object(SECURED))).toBe("secured");
    await oob(KEY_UPDATE, session);
    expect(secured.oob.slice(seen.secured)).toEqual([{ command: KEY_UPDATE, payload: "0100feff" }]);
    expect(await r.normal(object(CMA))).toBe("cma");
    await oob(ENDPOINT_INFO);
    // An empty session ID goes on as 0.
    await oob(KEY_UPDATE);
    expect(cma.oob.slice(seen.cma)).toEqual([
      { command: ENDPOINT_INFO, payload: "" },
      { command: KEY_UPDATE, payload: "00000000" },
    ]);
    // The stream stays in step: each object still gets its own answer.
    expect(await r.normal(object(SECURED))).toBe("secured");
    expect(both.stats).toMatchObject({
      forwarded: stats.forwarded + 3,
      outOfBand: stats.outOfBand + 3,
      upstreamError: stats.upstreamError,
    });
    r.c.close();
  });

  it("echoes an OOB command whose mailbox answers anything else or dies before echoing it, as an upstream error", async () => {
    const r = await requester(both.address);
    expect(await r.normal(object(CMA))).toBe("cma");
    const errors = both.stats.upstreamError;
    const outOfBand = both.stats.outOfBand;
    cma.setHold(true);
    // A NORMAL answer is not the echo.
    let holding = once(cma.held, "held");
    const misanswered = r.send(ENDPOINT_INFO);
    let [conn] = await holding;
    conn.send({ command: SocketCommand.NORMAL, transport: TransportType.PCI_DOE, payload: object(CMA) });
    expect(await misanswered).toMatchObject({ command: ENDPOINT_INFO, payload: Buffer.alloc(0) });
    expect(both.stats.upstreamError).toBe(errors + 1);
    holding = once(cma.held, "held");
    const dying = r.send(KEY_UPDATE, Buffer.alloc(4));
    [conn] = await holding;
    conn.destroy();
    expect(await dying).toMatchObject({ command: KEY_UPDATE, payload: Buffer.alloc(0) });
    expect(both.stats.upstreamError).toBe(errors + 2);
    expect(both.stats.outOfBand).toBe(outOfBand);
    cma.setHold(false);
    expect(await r.normal(object(CMA))).toBe("cma"); // reconnects
    r.c.close();
  });
});
