import { execFile, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DoeClient } from "../../src/doe/client.js";
import { DoeError } from "../../src/doe/discovery.js";
import { cliPath, type SpawnedDevice, spawnDevice } from "../../src/fixture/spawn-device.js";
import { RawPeer } from "../support/raw-peer.js";

const run = promisify(execFile);
const NORMAL = 0x0001;
const PCI_DOE = 2;

describe("doe-emu device process over TCP", () => {
  let dev: SpawnedDevice;
  let port: number;

  beforeAll(async () => {
    dev = await spawnDevice();
    port = dev.mailboxes[0]!.endpoint.port;
  });
  afterAll(async () => {
    await dev.stop();
  });

  it("prints one line per endpoint with the bound port", () => {
    expect(dev.mailboxes).toHaveLength(1);
    expect(dev.mailboxes[0]).toMatchObject({ id: "01:00.0/0", protocols: ["0001:00", "0001:01", "0001:02"] });
    expect(port).toBeGreaterThan(0);
    expect(dev.control.port).toBeGreaterThan(0);
  });

  it("answers TEST and discovery with the exact mailbox-wire bytes, written by hand", async () => {
    const peer = await RawPeer.connect(port);
    peer.send("0000dead 00000002 0000000e 436c69656e742048656c6c6f2100");
    expect((await peer.recvBytes()).toString("hex")).toBe(
      "0000dead000000020000000e5365727665722048656c6c6f2100",
    );
    peer.send("00000001 00000002 0000000c 01000000 03000000 01000000");
    expect((await peer.recvBytes()).toString("hex")).toBe("00000001000000020000000c010000000300000001000102");
    peer.send("00000001 00000002 0000000c 01000000 03000000 00000000");
    expect((await peer.recvBytes()).toString("hex")).toBe("00000001000000020000000c010000000300000001000001");
    peer.send("00000001 00000002 0000000c 01000000 03000000 02000000");
    expect((await peer.recvBytes()).toString("hex")).toBe("00000001000000020000000c010000000300000001000200");
    peer.send("00000001 00000002 0000000c 01000000 03000000 03000000");
    expect((await peer.recvBytes()).toString("hex")).toBe("00000001000000020000000c0100000003000000ffffff00");
    peer.close();
  });

  it("reassembles a frame sent one byte per write", async () => {
    const peer = await RawPeer.connect(port);
    const bytes = Buffer.from("00000001000000020000000c010000000300000001000000", "hex");
    for (const b of bytes) {
      peer.send(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
    expect((await peer.recvBytes()).toString("hex")).toBe("00000001000000020000000c010000000300000001000102");
    peer.close();
  });

  it("answers CMA/SPDM and secured CMA/SPDM", async () => {
    const peer = await RawPeer.connect(port);
    peer.sendFrame(NORMAL, PCI_DOE, "01000100 03000000 10840000");
    const rsp = await peer.recv();
    expect(rsp.command).toBe(NORMAL);
    expect(rsp.payload.subarray(0, 4).toString("hex")).toBe("01000100");
    peer.close();
  });

  it("discards bad DOE objects with an empty NORMAL frame and keeps the connection", async () => {
    const peer = await RawPeer.connect(port);
    for (const bad of [
      "01000100 04000000 10840000", // length says 4 DW, 3 sent
      "01000101 03000000 10840000", // reserved byte set
      "01000500 03000000 00000000", // type 5 is not listed
      "0100", // shorter than a header
    ]) {
      peer.sendFrame(NORMAL, PCI_DOE, bad);
      const rsp = await peer.recv();
      expect(rsp).toEqual({ command: NORMAL, transport: PCI_DOE, payload: Buffer.alloc(0) });
    }
    peer.sendFrame(NORMAL, PCI_DOE, "01000000 03000000 00000000");
    expect((await peer.recv()).payload.toString("hex")).toBe("010000000300000001000001");
    peer.close();
  });

  it("echoes CONTINUE, closes that connection, and keeps serving", async () => {
    const peer = await RawPeer.connect(port);
    peer.sendFrame(0xfffd, PCI_DOE);
    expect(await peer.recv()).toEqual({ command: 0xfffd, transport: PCI_DOE, payload: Buffer.alloc(0) });
    expect(await peer.closesWithin()).toBe(true);
    const again = await DoeClient.connect(dev.mailboxes[0]!.endpoint);
    expect(again.protocols).toHaveLength(3);
    again.close();
  });

  it("ignores frames that follow CONTINUE in the same write", async () => {
    const peer = await RawPeer.connect(port);
    peer.send("0000fffd 00000002 00000000  0000dead 00000002 0000000e 436c69656e742048656c6c6f2100");
    expect(await peer.recv()).toEqual({ command: 0xfffd, transport: PCI_DOE, payload: Buffer.alloc(0) });
    expect(await peer.closesWithin()).toBe(true);
  });

  it("answers an unknown command with UNKNOWN and closes", async () => {
    const peer = await RawPeer.connect(port);
    peer.sendFrame(0x1234, PCI_DOE);
    expect(await peer.recv()).toEqual({ command: 0xffff, transport: PCI_DOE, payload: Buffer.alloc(0) });
    expect(await peer.closesWithin()).toBe(true);
  });

  it("closes a connection whose transport type is not PCI_DOE", async () => {
    const peer = await RawPeer.connect(port);
    peer.sendFrame(0xdead, 1, Buffer.from("Client Hello!\0"));
    expect(await peer.closesWithin()).toBe(true);
  });

  it("closes a connection with an oversized size field at once, and serves the others", async () => {
    const other = await RawPeer.connect(port);
    const peer = await RawPeer.connect(port);
    peer.send("00000001 00000002 7fffffff 01000000");
    expect(await peer.closesWithin()).toBe(true);
    other.sendFrame(0xdead, PCI_DOE, Buffer.from("Client Hello!\0"));
    expect((await other.recv()).payload.toString("latin1")).toBe("Server Hello!\0");
    other.close();
    expect(dev.child.exitCode).toBeNull();
  });

  it("serves several connections at once, each in order", async () => {
    const clients = await Promise.all([1, 2, 3].map(() => DoeClient.connect(dev.mailboxes[0]!.endpoint)));
    const all = await Promise.all(clients.map((c) => Promise.all([0, 1, 2].map(() => c.discover()))));
    for (const per of all) for (const list of per) expect(list.map((p) => p.type)).toEqual([0, 1, 2]);
    for (const c of clients) c.close();
  });

  it("DOE client refuses a protocol discovery did not list", async () => {
    const c = await DoeClient.connect(dev.mailboxes[0]!.endpoint);
    await expect(c.exchange({ vendorId: 1, type: 5, payload: Buffer.alloc(4) })).rejects.toThrow(DoeError);
    c.close();
  });

  it("`doe-emu doe discover` lists the protocols", async () => {
    const { stdout } = await run(process.execPath, [cliPath(), "doe", "discover", `127.0.0.1:${port}`]);
    expect(stdout).toBe("0001:00 DOE Discovery\n0001:01 CMA/SPDM\n0001:02 Secured CMA/SPDM\n");
  });
});

describe("device process lifecycle", () => {
  it("echoes SHUTDOWN and exits 0", async () => {
    const dev = await spawnDevice();
    const peer = await RawPeer.connect(dev.mailboxes[0]!.endpoint.port);
    peer.sendFrame(0xfffe, PCI_DOE);
    expect(await peer.recv()).toEqual({ command: 0xfffe, transport: PCI_DOE, payload: Buffer.alloc(0) });
    expect(await dev.exited).toBe(0);
  });

  it("exits 0 on SIGTERM", async () => {
    const dev = await spawnDevice();
    expect(await dev.stop()).toBe(0);
  });

  it("opens one endpoint per mailbox from a description file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "doe-emu-"));
    const file = join(dir, "two.json");
    writeFileSync(
      file,
      JSON.stringify({
        bus: 3,
        functions: [
          {
            mailboxes: [
              { protocols: ["0001:00", "0001:01"] },
              { port: 0, protocols: ["0001:00", "0001:02"] },
            ],
          },
        ],
      }),
    );
    const dev = await spawnDevice({ args: ["--config", file] });
    try {
      expect(dev.mailboxes.map((m) => [m.id, m.protocols.join(",")])).toEqual([
        ["03:00.0/0", "0001:00,0001:01"],
        ["03:00.0/1", "0001:00,0001:02"],
      ]);
      const second = await DoeClient.connect(dev.mailboxes[1]!.endpoint);
      expect(second.protocols.map((p) => p.type)).toEqual([0, 2]);
      second.close();
    } finally {
      await dev.stop();
    }
  });

  it("refuses a bad description with the path of the bad field", async () => {
    const dir = mkdtempSync(join(tmpdir(), "doe-emu-"));
    const file = join(dir, "bad.json");
    writeFileSync(file, JSON.stringify({ functions: [{ mailboxes: [{ protocols: ["0001:01"] }] }] }));
    const err = await run(process.execPath, [cliPath(), "device", "--config", file, "--port", "0"]).catch(
      (e) => e,
    );
    expect(err.code).toBe(1);
    expect(err.stderr).toContain("functions[0].mailboxes[0].protocols: must list DOE Discovery");
  });

  it("takes the last of a repeated scalar flag (--port, --log-level, --pretty)", async () => {
    const child = spawn(
      process.execPath,
      [
        cliPath(),
        "device",
        // Were the first taken, the device could not listen.
        "--port",
        "65536",
        "--port",
        "0",
        "--log-level",
        "error",
        "--log-level",
        "info",
        "--pretty",
        "--pretty",
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    let stdout = "";
    for await (const chunk of child.stdout) {
      stdout += chunk;
      if (stdout.includes("ready")) break;
    }
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(stdout);
    const doe = await DoeClient.connect({ host: "127.0.0.1", port: Number(m![1]) });
    await doe.end("SHUTDOWN");
    expect(await exited).toBe(0);
    // "connected" is an info line: printed only because the later --log-level won, and pretty.
    expect(stderr).toMatch(/INFO.*connected/);
  });

  it("reports a port in use clearly", async () => {
    const dev = await spawnDevice();
    try {
      const err = await run(process.execPath, [
        cliPath(),
        "device",
        "--port",
        String(dev.mailboxes[0]!.endpoint.port),
      ]).catch((e) => e);
      expect(err.code).toBe(1);
      expect(err.stderr).toMatch(/EADDRINUSE/);
    } finally {
      await dev.stop();
    }
  });
});
