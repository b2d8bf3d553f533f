import net from "node:net";
import { expect, it } from "vitest";
import { armQuickAck, quickAckAvailable } from "../../src/net/quickack.js";

// Without quick ACKs every exchange with DMTF's tools stalls ~40 ms; make sure the FFI call loads.
it.runIf(process.platform === "linux")(
  "sets TCP_QUICKACK on a connected socket through setsockopt",
  async () => {
    expect(quickAckAvailable()).toBe(true);
    const server = net.createServer((c) => c.on("error", () => undefined));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const socket = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const warnings: string[] = [];
    expect(armQuickAck(socket, (m) => warnings.push(m))).toBe(true);
    expect(warnings).toEqual([]);
    socket.destroy();
    server.close();
  },
);
