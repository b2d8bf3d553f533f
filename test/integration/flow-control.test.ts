/**
 * Bounds on the mailbox wire, over real loopback sockets: a peer that sends and never reads stops
 * being read (its answers are not buffered without end) while others are served; pipelined
 * requests are answered in order through the bounded per-connection queue; part of a frame left
 * unfinished closes that connection only; a listener caps its connections.
 */
import net from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { encodeFrame, SocketCommand, TEST_CLIENT_HELLO, TransportType } from "../../protocol/socket.js";
import { parseDescription } from "../../src/device/description.js";
import { type RunningDevice, startDevice } from "../../src/device/device.js";
import { DoeClient } from "../../src/doe/client.js";
import { FramedServer, type ServerOptions } from "../../src/net/framed.js";
import { type SpdmEmuHandlers, serveSpdmEmu } from "../../src/net/spdm-emu-server.js";
import { logLines } from "../support/log-lines.js";
import { RawPeer } from "../support/raw-peer.js";

const frame = (command: number, payload = Buffer.alloc(0)) =>
  encodeFrame({ command, transport: TransportType.PCI_DOE, payload });

let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

/** A mailbox-wire server in this process with `opts`, answering NORMAL frames with `normal`. */
async function echoServer(
  opts: Partial<ServerOptions>,
  normal: SpdmEmuHandlers["normal"] = (p, reply) => reply(p),
): Promise<FramedServer> {
  const log = opts.log ?? logLines().log;
  const server = await FramedServer.listen({
    host: "127.0.0.1",
    port: 0,
    ...opts,
    onConnection: (conn) => serveSpdmEmu(conn, log, { normal }),
  });
  cleanup.push(() => server.close());
  return server;
}

describe("mailbox wire bounds", () => {
  it("stops reading a peer that never reads its answers, and keeps serving others", async () => {
    const { log, next } = logLines("debug");
    const device: RunningDevice = await startDevice({ description: parseDescription({}), port: 0, log });
    cleanup.push(() => device.stop());
    const { port } = device.mailboxes[0]!.endpoint;
    const paused = next("reading paused");
    // 32 MiB of TEST frames; this client never reads a byte of the answers.
    const flooder = net.connect(port, "127.0.0.1");
    flooder.on("error", () => undefined);
    cleanup.push(() => flooder.destroy());
    flooder.pause();
    const one = frame(SocketCommand.TEST, TEST_CLIENT_HELLO);
    const chunk = Buffer.concat(Array.from({ length: Math.ceil((1 << 20) / one.length) }, () => one));
    for (let i = 0; i < 32; i++) flooder.write(chunk);
    const line = await paused;
    // What the device holds for this peer is its socket's high-water mark and a read's answers.
    expect(line["unsent"]).toBeLessThan(1 << 20);
    // Another peer is served meanwhile.
    const other = await DoeClient.connect(device.mailboxes[0]!.endpoint);
    cleanup.push(() => other.close());
    expect(other.protocols.length).toBe(3);
  });

  it("answers a thousand pipelined requests in order through the bounded queue", async () => {
    // Asynchronous answers, so frames pile up and the queue's hold engages.
    const server = await echoServer({}, (payload, reply) => setImmediate(() => reply(payload)));
    const peer = await RawPeer.connect(server.address.port);
    cleanup.push(() => peer.close());
    const requests = Array.from({ length: 1000 }, (_, i) => {
      const p = Buffer.alloc(8);
      p.writeUInt32BE(i, 0);
      return frame(SocketCommand.NORMAL, p);
    });
    peer.send(Buffer.concat(requests));
    for (let i = 0; i < 1000; i++) expect((await peer.recv()).payload.readUInt32BE(0)).toBe(i);
  });

  it("closes a connection left halfway through a frame; an idle one stays", async () => {
    const { log, next } = logLines("warn");
    const server = await echoServer({ log, partialFrameTimeoutMs: 200 });
    const idle = await RawPeer.connect(server.address.port);
    const stalled = await RawPeer.connect(server.address.port);
    cleanup.push(
      () => idle.close(),
      () => stalled.close(),
    );
    const timedOut = next("part of a frame unfinished too long; closing connection");
    stalled.send(frame(SocketCommand.TEST, TEST_CLIENT_HELLO).subarray(0, 5));
    expect((await timedOut)["bytes"]).toBe(5);
    await stalled.closed;
    idle.sendFrame(SocketCommand.TEST, TransportType.PCI_DOE, TEST_CLIENT_HELLO);
    expect((await idle.recv()).command).toBe(SocketCommand.TEST);
  });

  it("caps the connections of a listener and says so", async () => {
    const { log, next } = logLines("warn");
    const server = await echoServer({ log, maxConnections: 2 });
    const [a, b] = [await RawPeer.connect(server.address.port), await RawPeer.connect(server.address.port)];
    cleanup.push(
      () => a.close(),
      () => b.close(),
    );
    // Both are accepted before the third arrives.
    for (const p of [a, b]) {
      p.sendFrame(SocketCommand.TEST, TransportType.PCI_DOE, TEST_CLIENT_HELLO);
      await p.recv();
    }
    const refused = next("connection refused: 2 connections already open");
    const c = await RawPeer.connect(server.address.port);
    cleanup.push(() => c.close());
    await refused;
    await c.closed;
    // A connection that ends frees its place: the next one is served.
    a.close();
    await a.closed;
    await vi.waitFor(() => expect(server.connections.size).toBe(1));
    const d = await RawPeer.connect(server.address.port);
    cleanup.push(() => d.close());
    d.sendFrame(SocketCommand.TEST, TransportType.PCI_DOE, TEST_CLIENT_HELLO);
    expect((await d.recv()).command).toBe(SocketCommand.TEST);
  });
});
