import { execFileSync, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { netnsUnavailable } from "../../src/fixture/netns.js";
import { cliPath } from "../../src/fixture/spawn-device.js";
import { type RunningTopology, startTopology, type TopologyDevice } from "../../src/fixture/topology.js";
import type { TopologyView } from "../../src/host/api.js";
import { apiRequest, topologyReaches, watchEvents } from "../../src/host/api-client.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/topology.json", import.meta.url));
// Root (CAP_NET_ADMIN) and iproute2 are needed; CI runs as root.
const missing = await netnsUnavailable();
const skipped = missing === undefined ? "" : ` (skipped: ${missing})`;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const ipOut = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });
const namespaces = () =>
  ipOut("netns", "list")
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter(Boolean);
const links = () =>
  ipOut("-o", "link", "show")
    .split("\n")
    .map((l) => l.split(": ")[1]?.split("@")[0] ?? "");
const present = (view: TopologyView) =>
  view.devices
    .filter((d) => d.state === "present")
    .map((d) => d.name)
    .sort();

describe.skipIf(missing !== undefined)(
  `the example topology, each device in its own namespace${skipped}`,
  () => {
    let t: RunningTopology;
    beforeAll(async () => {
      // An unreachable timeout short for the link test, yet long enough that a loaded machine's slow
      // answers do not drop a device; the bounce timeout out of its way.
      t = await startTopology(EXAMPLE, {
        netns: true,
        probeIntervalMs: 300,
        unreachableTimeoutMs: 5000,
        bounceTimeoutMs: 20_000,
      });
    }, 60_000);
    afterAll(() => t?.stop());

    it("runs each device behind its own veth link; the host sees every TDEV and TDI across them", async () => {
      const ns = t.devices.map((d) => d.netns!.namespace);
      expect(new Set(ns).size).toBe(3);
      expect(namespaces()).toEqual(expect.arrayContaining(ns));
      for (const d of t.devices) {
        // Bound to the namespace's address of the benchmark range, not loopback.
        expect(d.control.host).toBe(d.netns!.address);
        expect(d.netns!.address).toMatch(/^198\.(18|19)\.\d+\.\d+$/);
        for (const m of d.mailboxes) expect(m.endpoint.host).toBe(d.netns!.address);
        expect(ipOut("netns", "pids", d.netns!.namespace).trim().split("\n").map(Number)).toContain(d.pid);
      }
      expect(t.tdevs.map((d) => d.bdf)).toEqual(["01:00.0", "02:00.0", "02:00.1"]);
      expect(t.tdis.map((d) => d.bdf)).toEqual([
        "01:00.0",
        "01:00.1",
        "01:00.2",
        "01:00.3",
        "02:00.0",
        "02:00.1",
      ]);
      const view = await t.topology();
      expect(view.devices.map((d) => d.control).sort()).toEqual(
        t.devices.map((d) => `${d.netns!.address}:${d.control.port}`).sort(),
      );
    });

    it("authenticates, connects and binds a TDI across the namespaces through the API", async () => {
      const post = (path: string, body?: unknown) => apiRequest(t.api, "POST", path, body);
      expect((await post("/v1/tdevs/02:00.0/authenticate")).status).toBe(200);
      expect((await post("/v1/tdevs/01:00.0/connect")).status).toBe(200);
      const bound = await post("/v1/tdis/01:00.2/bind", { vm: "vm1" });
      expect(bound).toMatchObject({ status: 200, body: { boundTo: "vm1", tdispState: "RUN" } });
      const view = await t.topology();
      expect(view.tdevs.find((d) => d.bdf === "01:00.0")!.state).toBe("connected");
      expect(view.tdevs.find((d) => d.bdf === "02:00.0")!.state).toBe("authenticated");
    });

    it("drops the device whose link is down (only it) after the timeout, and re-adds it when the link is up", async () => {
      const mf = t.devices.find((d) => d.name === "tee-multifunction")!;
      const all = ["plain", "tee-multifunction", "tee-nic"];
      const others = ["plain", "tee-nic"];
      const removals: string[] = [];
      const watch = await watchEvents(t.api, ({ event }) => {
        if (event.event === "device-removed") removals.push(`${event.device}: ${event.reason}`);
      });
      ipOut("link", "set", mf.netns!.hostInterface, "down");
      const dropped = await topologyReaches(t.api, (v) => present(v).join() === others.join(), 15_000);
      watch.close();
      // Removed once silent for the whole unreachable timeout, by the host's own account.
      expect(removals).toEqual([expect.stringMatching(/^tee-multifunction: unreachable for \d+ ms/)]);
      expect(Number(/for (\d+) ms/.exec(removals[0]!)![1])).toBeGreaterThanOrEqual(5000);
      expect(dropped.tdevs.map((d) => d.bdf)).toEqual(["01:00.0"]);
      // The other devices are untouched: the bound TDI stays bound.
      expect(dropped.tdis.find((d) => d.bdf === "01:00.2")).toMatchObject({ boundTo: "vm1" });
      ipOut("link", "set", mf.netns!.hostInterface, "up");
      const back = await topologyReaches(t.api, (v) => present(v).join() === all.join(), 20_000);
      expect(back.tdevs.map((d) => d.bdf).sort()).toEqual(["01:00.0", "02:00.0", "02:00.1"]);
      expect(back.tdis.find((d) => d.bdf === "01:00.2")).toMatchObject({ boundTo: "vm1" });
      // Its own waits (15 s for the drop, 20 s for the re-add) are its limits, not the default 20 s.
    }, 40_000);

    it("leaves no namespace, veth or process behind when stopped", async () => {
      await t.stop();
      const ours = t.devices.map((d) => d.netns!);
      const ns = namespaces();
      for (const l of ours) expect(ns).not.toContain(l.namespace);
      const ifs = links();
      for (const l of ours) expect(ifs).not.toContain(l.hostInterface);
      for (const pid of [t.host.pid, ...t.devices.map((d) => d.pid!)]) expect(alive(pid)).toBe(false);
    });
  },
);

describe.skipIf(missing !== undefined)(`doe-emu launch --netns${skipped}`, () => {
  it("leaves no process when SIGKILLed, and --cleanup-netns removes its namespaces and veths", async () => {
    const child = spawn(
      process.execPath,
      [cliPath(), "launch", EXAMPLE, "--netns", "--api", "127.0.0.1:0", "--log-level", "warn"],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    const pids: number[] = [];
    const ours: { namespace: string; veth: string }[] = [];
    for await (const line of createInterface({ input: child.stdout })) {
      const pid = /pid (\d+)/.exec(line);
      if (pid) pids.push(Number(pid[1]));
      const ns = /netns (\S+) link (\S+)/.exec(line);
      if (ns) ours.push({ namespace: ns[1]!, veth: ns[2]! });
      if (line === "launch ready") break;
    }
    expect([pids.length, ours.length]).toEqual([4, 3]);
    for (const o of ours) expect(o.namespace.startsWith(`doe-emu-${child.pid}-`)).toBe(true);
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
    const deadline = Date.now() + 10_000;
    while (pids.some(alive) && Date.now() < deadline) await sleep(50);
    expect(pids.filter(alive)).toEqual([]);
    // A SIGKILLed launcher removes nothing itself: its namespaces wait for the next start or this.
    expect(namespaces()).toEqual(expect.arrayContaining(ours.map((o) => o.namespace)));
    const out = execFileSync(process.execPath, [cliPath(), "launch", "--cleanup-netns"], {
      encoding: "utf8",
    });
    for (const o of ours) expect(out).toContain(`removed namespace ${o.namespace}`);
    const ns = namespaces();
    expect(ns.filter((n) => n.startsWith(`doe-emu-${child.pid}-`))).toEqual([]);
    const ifs = links();
    for (const o of ours) expect(ifs).not.toContain(o.veth);
  }, 60_000);
});

describe.skipIf(missing !== undefined)(`a topology naming hosts${skipped}`, () => {
  it("runs the entries of one host in one namespace, and entries without a host on loopback", async () => {
    const fn = (deviceId: string) => ({ functions: [{ function: 0, deviceId, mailboxes: [] }] });
    const t = await startTopology({
      devices: [
        { name: "a1", bus: 1, host: "hostA", description: fn("0xa1") },
        { name: "local", bus: 2, description: fn("0xb0") },
        { name: "a2", bus: 3, host: "hostA", description: fn("0xa2") },
      ],
    });
    try {
      const [a1, local, a2] = t.devices as [TopologyDevice, TopologyDevice, TopologyDevice];
      expect(a1.netns!.namespace).toBe(a2.netns!.namespace);
      expect(a1.control.host).toBe(a2.control.host);
      expect(a1.netns!.host).toBe("hostA");
      expect([local.netns, local.control.host]).toEqual([undefined, "127.0.0.1"]);
      expect(ipOut("netns", "pids", a1.netns!.namespace).trim().split("\n").map(Number).sort()).toEqual(
        [a1.pid, a2.pid].sort(),
      );
      const view = await t.topology();
      expect(present(view)).toEqual(["a1", "a2", "local"]);
      expect(view.devices.find((d) => d.name === "local")!.source).toBe("flag");
    } finally {
      await t.stop();
    }
    expect(namespaces()).not.toContain(t.devices[0]!.netns!.namespace);
  }, 60_000);
});
