import { readdirSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDescription } from "../../src/device/description.js";
import { type RunningDevice, startDevice } from "../../src/device/device.js";
import { type Host, startHost } from "../../src/host/host.js";
import type { HostEvent } from "../../src/host/registry.js";
import { silentLogger } from "../../src/log.js";
import { nextEvent, registryReaches } from "../support/host-events.js";

/** A NIC-like device: one TDEV, and a TDI for PF0 and each of its 3 VFs. */
const nic = parseDescription({
  name: "hotplug-nic",
  bus: 5,
  functions: [{ sriov: { totalVfs: 4, numVfs: 3, vfEnable: true } }],
});

const fds = () => readdirSync("/proc/self/fd").length;
const resources = () =>
  process
    .getActiveResourcesInfo()
    .filter((r) => r !== "Timeout")
    .sort();
/**
 * Lets the event loop finish the callback it is in and run the close callbacks of the handles closed
 * so far: a closed socket's fd is gone at once, but its handle is listed until then.
 */
const closeCallbacksRun = () => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

describe("hotplug", () => {
  let host: Host;
  const events: HostEvent[] = [];
  const counts = () => [host.registry.devices.size, host.registry.tdevs.size, host.registry.tdis.size];

  beforeAll(async () => {
    host = await startHost({
      log: silentLogger,
      hotplug: { host: "127.0.0.1", port: 0 },
      probeIntervalMs: 100,
      unreachableTimeoutMs: 300,
    });
    host.registry.on("event", (e) => events.push(e));
  });
  afterAll(() => host.stop());

  it("adds and removes a device 50 times; counts return to zero and no socket or handle leaks", async () => {
    const cycle = async () => {
      const device = await startDevice({ description: nic, port: 0, host: host.hotplug!, log: silentLogger });
      await registryReaches(host.registry, () => counts().join() === "1,1,4");
      await device.stop();
      await registryReaches(host.registry, () => counts().join() === "0,0,0");
    };
    await cycle(); // warm-up: lazily created handles (loggers, quick-ack) exist before the baseline
    await closeCallbacksRun();
    const [fdsBefore, resourcesBefore] = [fds(), resources()];
    events.length = 0;
    for (let i = 0; i < 50; i++) await cycle();
    await closeCallbacksRun();
    expect(fds()).toBe(fdsBefore);
    expect(resources()).toEqual(resourcesBefore);
    const kinds = events.map((e) => e.event);
    for (const [kind, n] of [
      ["device-added", 50],
      ["device-removed", 50],
      ["tdev-added", 50],
      ["tdev-removed", 50],
      ["tdi-added", 200],
      ["tdi-removed", 200],
    ] as const)
      expect(kinds.filter((k) => k === kind)).toHaveLength(n);
    // Removal frees the TDIs first, then the TDEV, then the device.
    const removal = kinds.slice(kinds.indexOf("tdi-removed"), kinds.indexOf("device-removed") + 1);
    expect(removal).toEqual([
      "tdi-removed",
      "tdi-removed",
      "tdi-removed",
      "tdi-removed",
      "tdev-removed",
      "device-removed",
    ]);
  });

  it("re-adds a device given by control endpoint when it comes back, after removing it as unreachable", async () => {
    let device: RunningDevice | undefined = await startDevice({
      description: nic,
      port: 0,
      log: silentLogger,
    });
    const control = device.control;
    const staticHost = await startHost({
      log: silentLogger,
      devices: [{ control, source: "flag" }],
      probeIntervalMs: 50,
      unreachableTimeoutMs: 200,
    });
    try {
      const n = () => staticHost.registry.tdis.size;
      await registryReaches(staticHost.registry, () => n() === 4);
      const removed = nextEvent(staticHost.registry, "device-removed");
      await device.stop();
      // Removed only once silent for the whole unreachable timeout, by the host's own account.
      const { reason } = await removed;
      expect(Number(/^unreachable for (\d+) ms/.exec(reason)?.[1])).toBeGreaterThanOrEqual(200);
      expect(n()).toBe(0);
      device = await startDevice({ description: nic, port: 0, controlPort: control.port, log: silentLogger });
      await registryReaches(staticHost.registry, () => n() === 4);
    } finally {
      await staticHost.stop();
      await device?.stop();
    }
  });
});
