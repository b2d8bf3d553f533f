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

/** A server that answers the n-th frame after delays[n] ms (never, for -1), echoing its payload. */
async function server(delays: number[]): Promise<{ port: number; close: () => void }> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((c) => {
    sockets.add(c);
    const d = new FrameDecoder();
    let n = 0;
    c.on("data", (chunk) => {
      for (const f of d.push(chunk)) {
        const delay = delays[n++] ?? 0;
        if (delay >= 0) setTimeout(() => c.write(encodeFrame(f)), delay);
      }
    });
    c.on("error", () => undefined);
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return {
    port: (s.address() as net.AddressInfo).port,
    close: () => {
      for (const c of sockets) c.destroy();
      s.close();
    },
  };
}

const frame = (i: number) => ({ command: 1, transport: 2, payload: Buffer.from([i]) });
let cleanup: (() => void)[] = [];
afterEach(() => {
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
    const srv = await server([150, 150, 150, 150]);
    cleanup.push(srv.close);
    const c = await FramedClient.connect({ host: "127.0.0.1", port: srv.port }, { timeoutMs: 400 });
    cleanup.push(() => c.close());
    for (let i = 0; i < 4; i++) expect((await c.request(frame(i))).payload[0]).toBe(i);
  });

  it("times out a short request after a long one on time, not on the long one's clock", async () => {
    const srv = await server([0, -1]);
    cleanup.push(srv.close);
    const c = await FramedClient.connect({ host: "127.0.0.1", port: srv.port });
    cleanup.push(() => c.close());
    expect((await c.request(frame(0), 60_000)).payload[0]).toBe(0);
    await expect(c.request(frame(1), 100)).rejects.toBeInstanceOf(TimeoutError);
  }, 5_000);

  it("times out a request with no answer, closes the connection and fails what is queued", async () => {
    const srv = await server([0, -1, 0]);
    cleanup.push(srv.close);
    const c = await FramedClient.connect({ host: "127.0.0.1", port: srv.port }, { timeoutMs: 200 });
    expect((await c.request(frame(0))).payload[0]).toBe(0);
    const started = performance.now();
    const [late, queued] = await Promise.allSettled([c.request(frame(1)), c.request(frame(2))]);
    expect(late.status === "rejected" && late.reason).toBeInstanceOf(TimeoutError);
    expect(queued.status === "rejected" && queued.reason).toBeInstanceOf(ConnectionClosedError);
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    expect(c.closed).toBe(true);
    await expect(c.request(frame(3))).rejects.toBeInstanceOf(ConnectionClosedError);
  });
});
