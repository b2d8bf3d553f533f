import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Command, Header, parseRoutingId, Sriov, SriovCtrl } from "../../protocol/pci.js";
import { parseDescription } from "../../src/device/description.js";
import { startDevice } from "../../src/device/device.js";
import { type RunningTopology, startTopology } from "../../src/fixture/topology.js";
import type { TopologyView } from "../../src/host/api.js";
import { ControlClient } from "../../src/host/control-client.js";
import { type Host, startHost } from "../../src/host/host.js";
import { DEFAULT_MMIO_WINDOWS } from "../../src/host/mmio.js";
import { scanBus } from "../../src/host/scan.js";
import { silentLogger } from "../../src/log.js";
import { registryReaches } from "../support/host-events.js";
import { logLines } from "../support/log-lines.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/topology.json", import.meta.url));

type ViewBar = TopologyView["devices"][number]["functions"][number]["bars"][number];
const barsOf = (view: TopologyView) =>
  view.devices.flatMap((d) => d.functions.flatMap((f) => f.bars.map((b) => ({ bdf: f.bdf, ...b }))));
const range = (b: ViewBar) => ({ start: BigInt(b.address!), end: BigInt(b.address!) + BigInt(b.size) });
/** The 32-bit value of config register `at` that holds `address`, flag bits aside. */
const dwords = async (c: ControlClient, rid: number, at: number, is64: boolean) => {
  const low = BigInt((await c.cfgRead(rid, at, 4)) & ~0xf) & 0xffff_ffffn;
  return is64 ? low | (BigInt(await c.cfgRead(rid, at + 4, 4)) << 32n) : low;
};

describe("BAR assignment by the host's bus scan", () => {
  let t: RunningTopology;
  beforeAll(async () => {
    t = await startTopology(EXAMPLE, { bounceTimeoutMs: 20_000, unreachableTimeoutMs: 20_000 });
  });
  afterAll(() => t?.stop());

  it("gives every function and VF non-overlapping, naturally aligned BARs, in the device's config space with decode on", async () => {
    const view = await t.topology();
    const nic = view.devices.find((d) => d.name === "tee-nic")!;
    // Devices are scanned concurrently: where each lands in the window depends on the order.
    expect(nic.functions[0]!.bars).toEqual([
      { index: 0, type: "mem64", prefetchable: true, size: "0x200000", address: expect.any(String) },
      { index: 2, type: "mem64", prefetchable: false, size: "0x4000", address: expect.any(String) },
    ]);
    // VF n decodes its slice of the PF's VF BAR region, which is sized for TotalVFs (8).
    const vfs = nic.functions.filter((f) => f.isVf).map((f) => BigInt(f.bars[0]!.address!));
    expect(vfs.map((a) => a - vfs[0]!)).toEqual([0n, 0x4000n, 0x8000n]);
    expect(vfs[0]! % 0x4000n).toBe(0n);
    const vfRegion = { start: vfs[0]!, end: vfs[0]! + 8n * 0x4000n };
    const others = barsOf(view).filter((b) => !nic.functions.some((f) => f.isVf && f.bdf === b.bdf));
    for (const b of others)
      expect(range(b).end <= vfRegion.start || range(b).start >= vfRegion.end).toBe(true);
    const bars = barsOf(view);
    expect(bars.length).toBeGreaterThan(0);
    for (const b of bars) {
      expect(b.address, `${b.bdf} BAR${b.index}`).not.toBeNull();
      expect(BigInt(b.address!) % BigInt(b.size)).toBe(0n);
      const window = b.type === "mem64" ? DEFAULT_MMIO_WINDOWS.mem64 : DEFAULT_MMIO_WINDOWS.mem32;
      expect(range(b).start >= window.base && range(b).end <= window.base + window.size).toBe(true);
    }
    const sorted = bars.map(range).sort((a, b) => (a.start < b.start ? -1 : 1));
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.start >= sorted[i - 1]!.end).toBe(true);

    for (const d of view.devices) {
      const [host, port] = d.control.split(/:(?=\d+$)/);
      const c = await ControlClient.connect({ host: host!, port: Number(port) });
      try {
        const bus = parseRoutingId(d.functions[0]!.bdf)! >> 8;
        const scanned = await scanBus((rid, off, w) => c.cfgRead(rid, off, w), bus);
        for (const f of d.functions.filter((g) => !g.isVf)) {
          const rid = parseRoutingId(f.bdf)!;
          expect((await c.cfgRead(rid, Header.COMMAND, 2)) & Command.MEMORY, f.bdf).toBe(Command.MEMORY);
          for (const b of f.bars)
            expect(await dwords(c, rid, Header.BAR0 + 4 * b.index, b.type === "mem64")).toBe(
              BigInt(b.address!),
            );
          const sriov = scanned.find((g) => g.rid === rid)!.sriov;
          if (!sriov) continue;
          expect((await c.cfgRead(rid, sriov.offset + Sriov.CTRL, 2)) & SriovCtrl.MSE).toBe(SriovCtrl.MSE);
          const vf0 = d.functions.find((g) => g.isVf)!;
          for (const b of vf0.bars)
            expect(await dwords(c, rid, sriov.offset + Sriov.BAR0 + 4 * b.index, b.type === "mem64")).toBe(
              BigInt(b.address!),
            );
        }
      } finally {
        c.close();
      }
    }
  });
});

describe("BAR space across hotplug, and a device that does not fit", () => {
  /** A PF with a 64-bit and a 32-bit BAR, and 4 VFs (3 enabled) with one VF BAR. */
  const nic = parseDescription({
    name: "bars-nic",
    bus: 6,
    functions: [
      {
        bars: [
          { index: 0, type: "mem64", size: "0x100000", prefetchable: true },
          { index: 2, type: "mem32", size: "0x1000" },
        ],
        sriov: {
          totalVfs: 4,
          numVfs: 3,
          vfEnable: true,
          vfBars: [{ index: 0, type: "mem64", size: "0x4000", prefetchable: true }],
        },
      },
    ],
  });
  let host: Host;
  const lines = logLines("warn");
  const addresses = () =>
    [...host.registry.devices.values()].flatMap((d) =>
      d.functions.flatMap((f) => f.bars.map((b) => b.address)),
    );

  beforeAll(async () => {
    host = await startHost({
      log: lines.log,
      hotplug: { host: "127.0.0.1", port: 0 },
      probeIntervalMs: 100,
      unreachableTimeoutMs: 300,
      // Room for one such device in each window, not two.
      mmioWindows: {
        mem32: { base: 0xc000_0000n, size: 0x1000n },
        mem64: { base: 0x80_0000_0000n, size: 0x11_0000n },
      },
    });
  });
  afterAll(() => host.stop());

  const add = async (name: string, bus = nic.bus) => {
    const device = await startDevice({
      description: { ...nic, name, bus },
      port: 0,
      host: host.hotplug!,
      log: silentLogger,
    });
    await registryReaches(host.registry, () => host.registry.devices.has(name));
    return device;
  };

  it("a removed device's space goes to the next one: removing and re-adding reuses the same addresses", async () => {
    const first = await add("bars-nic");
    const assigned = addresses();
    expect(assigned).toEqual([
      0x80_0000_0000n,
      0xc000_0000n,
      0x80_0010_0000n,
      0x80_0010_4000n,
      0x80_0010_8000n,
    ]);
    await first.stop();
    await registryReaches(host.registry, () => host.registry.devices.size === 0);
    for (let i = 0; i < 3; i++) {
      const again = await add("bars-nic");
      expect(addresses()).toEqual(assigned);
      await again.stop();
      await registryReaches(host.registry, () => host.registry.devices.size === 0);
    }
  });

  it("a device whose BARs do not fit is still added, its BARs unassigned and decode left off, with a warning", async () => {
    const a = await add("bars-nic");
    const warned = lines.next("no room in the MMIO window; the BAR stays unassigned");
    const b = await add("bars-nic-2", 7);
    await warned;
    const second = host.registry.devices.get("bars-nic-2")!;
    expect(second.functions.flatMap((f) => f.bars.map((bar) => bar.address))).toEqual(
      Array(5).fill(undefined),
    );
    const c = await ControlClient.connect(b.control);
    expect((await c.cfgRead(second.functions[0]!.rid, Header.COMMAND, 2)) & Command.MEMORY).toBe(0);
    c.close();
    await b.stop();
    await a.stop();
    await registryReaches(host.registry, () => host.registry.devices.size === 0);
  });
});
