import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeDiscoveryRequest, encodeDoeObject } from "../../protocol/doe.js";
import { SocketCommand, TEST_CLIENT_HELLO, TEST_SERVER_HELLO, TransportType } from "../../protocol/socket.js";
import { cliPath, spawnDevice } from "../../src/fixture/spawn-device.js";
import { type RunningTopology, startTopology } from "../../src/fixture/topology.js";
import { apiRequest } from "../../src/host/api-client.js";
import { startHost } from "../../src/host/host.js";
import type { AuthResult } from "../../src/host/registry.js";
import { FramedClient } from "../../src/net/framed.js";
import { nextEvent, registryReaches } from "../support/host-events.js";
import { logLines } from "../support/log-lines.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/topology.json", import.meta.url));

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("example topology", () => {
  let t: RunningTopology;
  beforeAll(async () => {
    // The host's timeouts out of the way of a loaded machine: no test here is about them.
    t = await startTopology(EXAMPLE, { bounceTimeoutMs: 20_000, unreachableTimeoutMs: 20_000 });
  });
  afterAll(() => t?.stop());

  it("yields exactly the TDEVs and TDIs of the host rules; the non-TEE device gets nothing", async () => {
    expect(t.tdevs.map((d) => d.bdf)).toEqual(["01:00.0", "02:00.0", "02:00.1"]);
    expect(t.tdis).toEqual([
      { bdf: "01:00.0", tdev: "01:00.0" },
      { bdf: "01:00.1", tdev: "01:00.0" },
      { bdf: "01:00.2", tdev: "01:00.0" },
      { bdf: "01:00.3", tdev: "01:00.0" },
      { bdf: "02:00.0", tdev: "02:00.0" },
      { bdf: "02:00.1", tdev: "02:00.1" },
    ]);
    const view = await t.topology();
    const [nic, mf] = [t.tdevs[0]!, t.tdevs[1]!];
    expect(nic.cmaMailbox).toBe(nic.securedMailbox); // one mailbox carries both
    expect(mf.cmaMailbox).not.toBe(mf.securedMailbox); // two mailboxes on PF0
    expect(t.tdevs[2]).toMatchObject({ cmaMailbox: null, securedMailbox: null });
    const plain = view.devices.find((d) => d.name === "plain")!;
    expect(plain.functions).toEqual([
      expect.objectContaining({
        bdf: "03:00.0",
        deviceId: 0xde30,
        portType: "endpoint",
        isVf: false,
        tee: false,
      }),
    ]);
    const vfs = view.devices.find((d) => d.name === "tee-nic")!.functions.filter((f) => f.isVf);
    expect(vfs.map((f) => [f.bdf, f.deviceId])).toEqual([
      ["01:00.1", 0xde11],
      ["01:00.2", 0xde11],
      ["01:00.3", 0xde11],
    ]);
    for (const d of t.devices) expect(alive(d.pid!)).toBe(true);
  });

  it("binds and unbinds TDIs as pci_tsm_bind does, with 404/400/405 for bad requests", async () => {
    const post = (path: string, body?: unknown) => apiRequest(t.api, "POST", path, body);
    // Binding needs the TDEV connected (its held session carries TDISP).
    expect(await post("/v1/tdis/01:00.2/bind", { vm: "vm1" })).toEqual({
      status: 409,
      body: { error: expect.stringMatching(/TDEV 01:00\.0 is unauthenticated, not connected/) },
    });
    expect((await post("/v1/tdevs/01:00.0/connect")).status).toBe(200);
    expect(await post("/v1/tdis/01:00.2/bind", { vm: "vm1" })).toEqual({
      status: 200,
      body: {
        bdf: "01:00.2",
        boundTo: "vm1",
        changed: true,
        tdispState: "RUN",
        reportDigest: expect.stringMatching(/^[0-9a-f]{64}$/),
      },
    });
    expect((await post("/v1/tdis/01:00.2/bind", { vm: "vm1" })).body).toMatchObject({ changed: false });
    const busy = await post("/v1/tdis/01%3A00.2/bind", { vm: 7 });
    expect(busy.status).toBe(409);
    expect(busy.body).toEqual({ error: expect.stringContaining("vm1") });
    const view = await t.topology();
    expect(view.tdis.find((x) => x.bdf === "01:00.2")!.boundTo).toBe("vm1");
    expect((await post("/v1/tdis/01:00.2/unbind")).body).toMatchObject({ boundTo: null, changed: true });
    expect((await post("/v1/tdis/01:00.2/unbind")).body).toMatchObject({ changed: false });
    expect((await post("/v1/tdis/01:00.2/bind", { vm: 7 })).body).toMatchObject({
      boundTo: 7,
      changed: true,
    });

    for (const [path, body, status] of [
      ["/v1/tdis/03:00.0/bind", { vm: "x" }, 404], // the non-TEE device has no TDI
      ["/v1/tdis/zz/bind", { vm: "x" }, 404],
      ["/v1/tdevs/01:00.1/authenticate", undefined, 404], // a VF is no TDEV
      ["/v1/tdevs/%E0/authenticate", undefined, 400], // a malformed escape is the client's error
      ["/v1/tdis/%/unbind", undefined, 400],
      ["/v1/nothing", undefined, 404],
      ["/v1/tdis/02:00.0/bind", { vm: "" }, 400],
      ["/v1/tdis/02:00.0/bind", { machine: 1 }, 400],
      ["/v1/tdis/02:00.0/bind", undefined, 400],
    ] as const) {
      const rsp = await post(path, body);
      expect([path, rsp.status]).toEqual([path, status]);
      expect(rsp.body).toEqual({ error: expect.any(String) });
    }
    expect((await apiRequest(t.api, "GET", "/v1/tdis/02:00.0/bind")).status).toBe(405);
    // Disconnecting stops the bound TDI first.
    expect((await post("/v1/tdevs/01:00.0/disconnect")).status).toBe(200);
    expect((await t.topology()).tdis.find((x) => x.bdf === "01:00.2")).toMatchObject({
      boundTo: null,
      state: "unbound",
      tdispState: "CONFIG_UNLOCKED",
    });
  });

  it("bounces TEST and DOE discovery to the TDEV's CMA mailbox; a TDEV without mailboxes answers empty", async () => {
    const ask = async (bdf: string) => {
      const c = await FramedClient.connect(t.tdevs.find((d) => d.bdf === bdf)!.bounce);
      const frame = (command: number, payload: Buffer) =>
        c.request({ command, transport: TransportType.PCI_DOE, payload });
      const hello = await frame(SocketCommand.TEST, TEST_CLIENT_HELLO);
      expect(hello.payload.equals(TEST_SERVER_HELLO)).toBe(true);
      const disc = encodeDoeObject({
        vendorId: 1,
        type: 0,
        payload: encodeDiscoveryRequest({ index: 1, version: 0 }),
      });
      const rsp = await frame(SocketCommand.NORMAL, disc);
      c.close();
      return rsp.payload.toString("hex");
    };
    expect(await ask("02:00.0")).toBe("0100000003000000" + "01000100"); // index 1 of the CMA mailbox: 0001:01, last
    expect(await ask("02:00.1")).toBe("");
    const view = await t.topology();
    expect(view.tdevs.find((d) => d.bdf === "02:00.1")!.bounceStats).toMatchObject({ missingMailbox: 1 });
  });

  it("authenticates a TDEV through its CMA mailbox and keeps the result", async () => {
    const rsp = await apiRequest<{ auth: AuthResult }>(t.api, "POST", "/v1/tdevs/01:00.0/authenticate");
    expect(rsp.status).toBe(200);
    const { auth } = rsp.body;
    expect(auth.version).toMatch(/^1\.[0-4]$/);
    expect(auth.algorithms).toMatchObject({ BaseHash: expect.any(String), BaseAsym: expect.any(String) });
    expect(auth.leafCertDigest).toMatch(/^([0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})$/);
    expect(auth.measurements.length).toBeGreaterThan(0);
    const tdev = (await t.topology()).tdevs.find((d) => d.bdf === "01:00.0")!;
    expect(tdev).toMatchObject({ state: "authenticated", auth });
    const none = await apiRequest(t.api, "POST", "/v1/tdevs/02:00.1/authenticate");
    expect(none.status).toBe(409);
  });

  it("prints the topology as a tree with `doe-emu host status`", async () => {
    const child = spawn(process.execPath, [cliPath(), "host", "status", "--api", `127.0.0.1:${t.api.port}`]);
    const out: string[] = [];
    for await (const line of createInterface({ input: child.stdout })) out.push(line);
    const text = out.join("\n");
    expect(text).toMatch(/01:00\.3 {2}1b36:de11 {2}VF/);
    expect(text).toMatch(/TDI {2}unbound {2}TDISP CONFIG_UNLOCKED {2}\(TDEV 01:00\.0\)/);
    expect(text).toMatch(/01:00\.0 .*\n.*\n {6}TDEV authenticated SPDM 1\.\d/);
    expect(out.at(-1)).toBe("3 devices, 3 TDEVs, 6 TDIs");
  });
});

describe("a device killed mid-request", () => {
  it("gives the requester an empty reply at once, and the host drops the device", async () => {
    const device = await spawnDevice({ args: ["--bus", "9"] });
    const lines = logLines();
    // Timeouts longer than the test may run: an empty reply can only come from the device's death.
    const host = await startHost({
      log: lines.log,
      devices: [{ control: device.control, source: "flag" }],
      probeIntervalMs: 100,
      unreachableTimeoutMs: 300,
      bounceTimeoutMs: 60_000,
    });
    const { registry } = host;
    try {
      await registryReaches(registry, () => [...registry.devices.values()][0]?.state === "present");
      const c = await FramedClient.connect([...registry.tdevs.values()][0]!.bouncer.address, {
        timeoutMs: 60_000,
      });
      process.kill(device.pid, "SIGSTOP"); // the device cannot answer the request
      const disc = encodeDoeObject({
        vendorId: 1,
        type: 0,
        payload: encodeDiscoveryRequest({ index: 0, version: 0 }),
      });
      const forwarded = lines.next("object forwarded");
      const removed = nextEvent(registry, "device-removed");
      const pending = c.request({
        command: SocketCommand.NORMAL,
        transport: TransportType.PCI_DOE,
        payload: disc,
      });
      await forwarded; // the request is in flight: in the stopped device's socket
      process.kill(device.pid, "SIGKILL");
      const rsp = await pending;
      expect(rsp.payload.length).toBe(0);
      c.close();
      await removed;
      expect([registry.devices.size, registry.tdevs.size, registry.tdis.size]).toEqual([0, 0, 0]);
    } finally {
      await host.stop();
      await device.stop();
    }
  });
});

describe("doe-emu launch", () => {
  /** Starts `doe-emu launch` on the example; resolves with its child and the pids it printed. */
  const launch = async () => {
    const child = spawn(
      process.execPath,
      [cliPath(), "launch", EXAMPLE, "--api", "127.0.0.1:0", "--log-level", "warn"],
      {
        stdio: ["ignore", "pipe", "ignore"],
      },
    );
    const pids: number[] = [];
    let api = "";
    for await (const line of createInterface({ input: child.stdout })) {
      const pid = /pid (\d+)/.exec(line);
      if (pid) pids.push(Number(pid[1]));
      const a = /api (http:\S+)/.exec(line);
      if (a) api = a[1]!;
      if (line === "launch ready") break;
    }
    return { child, pids, api };
  };

  it("starts devices and host, prints the API address, and leaves no process behind on SIGINT", async () => {
    const { child, pids, api } = await launch();
    expect(pids).toHaveLength(4);
    expect(api).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    for (const pid of pids) expect(alive(pid)).toBe(true);
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGINT");
    expect(await exited).toBe(0);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  it("leaves no process behind when it is SIGKILLed: each child sees its launcher's pipe close", async () => {
    const { child, pids } = await launch();
    expect(pids).toHaveLength(4);
    child.kill("SIGKILL");
    const deadline = Date.now() + 10_000;
    while (pids.some(alive) && Date.now() < deadline) await sleep(50);
    expect(pids.filter(alive)).toEqual([]);
  });
});
