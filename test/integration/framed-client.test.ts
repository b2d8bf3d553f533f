import { EventEmitter, once } from "node:events";
import net from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { encodeFrame, FrameDecoder } from "../../protocol/socket.js";
import {
  ConnectionClosedError,
  FramedClient,
  FramedServer,
  parseEndpoint,
  TimeoutError,
} from "../../src/net/framed.js";

/**
 * A server that answers the n-th frame after delays[n] ms (at once for 0, never for -1), echoing
 * its payload; `received` emits "frame" as each one comes in.
 */
async function server(delays: number[]) {
  const sockets = new Set<net.Socket>();
  const received = new EventEmitter<{ frame: [] }>();
  const s = net.createServer((c) => {
    sockets.add(c);
    const d = new FrameDecoder();
    let n = 0;
    c.on("data", (chunk) => {
      for (const f of d.push(chunk)) {
        const delay = delays[n++] ?? 0;
        const answer = () => c.write(encodeFrame(f));
        if (delay === 0) answer();
        else if (delay > 0) setTimeout(answer, delay);
        received.emit("frame");
      }
    });
    c.on("error", () => undefined);
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return {
    port: (s.address() as net.AddressInfo).port,
    received,
    close: () => {
      for (const c of sockets) c.destroy();
      s.close();
    },
  };
}

/** FramedClient's timeouts (and the server's delays) on a clock that moves only when the test moves it. */
const useFakeClock = () => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });

const frame = (i: number) => ({ command: 1, transport: 2, payload: Buffer.from([i]) });
let cleanup: (() => void)[] = [];
afterEach(() => {
  vi.useRealTimers();
  for (const c of cleanup) c();
  cleanup = [];
});

describe("FramedServer", () => {
  it("names an IPv6 peer with brackets, as formatEndpoint does", async () => {
    let server: FramedServer;
    try {
      server = await FramedServer.listen({ host: "::1", port: 0, onConnection: () => undefined });
    } catch {
      return; // no IPv6 loopback on this machine
    }
    cleanup.push(() => void server.close());
    const c = await FramedClient.connect(server.address);
    cleanup.push(() => c.close());
    await vi.waitUntil(() => server.connections.size === 1);
    const [conn] = server.connections;
    expect(conn!.peer).toMatch(/^\[::1\]:\d+$/);
    expect(parseEndpoint(conn!.peer)).toEqual({ host: "::1", port: expect.any(Number) });
  });
});

describe("FramedClient", () => {
  it("answers queued requests in order, one on the wire at a time", async () => {
    const srv = await server([30, 0, 10, 0]);
    cleanup.push(srv.close);
    const c = await FramedClient.connect({ host: "127.0.0.1", port: srv.port }, { timeoutMs: 500 });
    cleanup.push(() => c.close());
    const answers = await Promise.all([0, 1, 2, 3].map((i) => c.request(frame(i))));
    expect(answers.map((f) => f.payload[0])).toEqual([0, 1, 2, 3]);
  });

  it("keeps the timeout per request when answers come just inside it, one after another", async () => {
    useFakeClock();
    const srv = await server([150, 150, 150, 150]);
    cleanup.push(srv.close);
    const c = await FramedClient.connect({ host: "127.0.0.1", port: srv.port }, { timeoutMs: 400 });
    cleanup.push(() => c.close());
    // 600 ms in all: one deadline for the lot would expire during the third.
    for (let i = 0; i < 4; i++) {
      const arrived = once(srv.received, "frame");
      const answer = c.request(frame(i));
      await arrived;
      await vi.advanceTimersByTimeAsync(150);
      expect((await answer).payload[0]).toBe(i);
    }
  });

  it("times out a short request after a long one on time, not on the long one's clock", async () => {
    useFakeClock();
    const srv = await server([0, -1]);
    cleanup.push(srv.close);
    const c = await FramedClient.connect({ host: "127.0.0.1", port: srv.port });
    cleanup.push(() => c.close());
    expect((await c.request(frame(0), 60_000)).payload[0]).toBe(0);
    const short = expect(c.request(frame(1), 100)).rejects.toBeInstanceOf(TimeoutError);
    await vi.advanceTimersByTimeAsync(99);
    expect(c.closed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await short;
  });

  it("times out a request with no answer, closes the connection and fails what is queued", async () => {
    useFakeClock();
    const srv = await server([0, -1, 0]);
    cleanup.push(srv.close);
    const c = await FramedClient.connect({ host: "127.0.0.1", port: srv.port }, { timeoutMs: 200 });
    expect((await c.request(frame(0))).payload[0]).toBe(0);
    const settled = Promise.allSettled([c.request(frame(1)), c.request(frame(2))]);
    await vi.advanceTimersByTimeAsync(199);
    expect(c.closed).toBe(false); // not given up before its timeout
    await vi.advanceTimersByTimeAsync(1);
    const [late, queued] = await settled;
    expect(late.status === "rejected" && late.reason).toBeInstanceOf(TimeoutError);
    expect(queued.status === "rejected" && queued.reason).toBeInstanceOf(ConnectionClosedError);
    expect(c.closed).toBe(true);
    await expect(c.request(frame(3))).rejects.toBeInstanceOf(ConnectionClosedError);
  });
});
