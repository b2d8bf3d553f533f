/**
 * The TSM bind step against real processes: tee-nic (a TEE PF0 with SR-IOV VFs and MSI-X) with a
 * short heartbeat period, the host connected to it. Bind locks, verifies the report and starts the
 * TDI over the TDEV's held session, for the PF and for a VF; unbind stops it. A BAR write while RUN
 * shows as ERROR, an FLR as CONFIG_UNLOCKED; a device that refuses the lock or reports a BAR the
 * host did not assign leaves the TDI unbound (502); the heartbeat keeps an idle session alive; a
 * device killed during a bind leaves the host consistent. In-process: a TDI the device already runs
 * refuses the lock (502 with the TDISP error).
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  CAP_LIST_NEXT,
  CapId,
  DevCtl,
  formatRoutingId,
  Header,
  PciExp,
  parseRoutingId,
} from "../../protocol/pci.js";
import { parseDescription } from "../../src/device/description.js";
import { cliPath } from "../../src/fixture/spawn-device.js";
import { type RunningTopology, startTopology } from "../../src/fixture/topology.js";
import type { TdiView } from "../../src/host/api.js";
import { apiRequest, topologyReaches } from "../../src/host/api-client.js";
import { HOST_MMIO_REPORTING_OFFSET, lockAndStart } from "../../src/host/bind.js";
import { LinkBusyError, MAX_WAITING } from "../../src/host/connect.js";
import { ControlClient } from "../../src/host/control-client.js";
import type { HostEvent } from "../../src/host/registry.js";
import { formatEndpoint } from "../../src/net/framed.js";
import { authenticate } from "../../src/requester/connection.js";
import { connectRequester } from "../../src/requester/run.js";
import { withHostAndDevice } from "../support/host-device.js";
import { nextEvent, registryReaches } from "../support/host-events.js";

const execFileAsync = promisify(execFile);
const EXAMPLE = fileURLToPath(new URL("../../examples/topology.json", import.meta.url));
const nicEntry = JSON.parse(readFileSync(EXAMPLE, "utf8")).devices[0];
/** Seconds; the device ends a session silent for twice as long. */
const HEARTBEAT_PERIOD = 2;

describe("TDI bind over TDISP", () => {
  let t: RunningTopology;
  let control: ControlClient;
  const PF = parseRoutingId("01:00.0")!;
  const post = (path: string, body?: unknown) =>
    apiRequest<Record<string, unknown>>(t.api, "POST", path, body);
  const getTdi = (bdf: string) => apiRequest<TdiView & { error?: string }>(t.api, "GET", `/v1/tdis/${bdf}`);
  const bind = (bdf: string, vm: string | number) => post(`/v1/tdis/${bdf}/bind`, { vm });
  const unbind = (bdf: string) => post(`/v1/tdis/${bdf}/unbind`);
  const tdiEntry = async (bdf: string) => (await t.topology()).tdis.find((x) => x.bdf === bdf)!;

  beforeAll(async () => {
    const description = { ...nicEntry.description, spdm: { heartbeatPeriod: HEARTBEAT_PERIOD } };
    t = await startTopology(
      { devices: [{ ...nicEntry, description }] },
      { bounceTimeoutMs: 20_000, unreachableTimeoutMs: 3000, probeIntervalMs: 200 },
    );
    control = await ControlClient.connect(t.devices[0]!.control, { timeoutMs: 5000 });
  });
  afterAll(async () => {
    control?.close();
    await t?.stop();
  });

  it("refuses to bind while the TDEV is not connected (409)", async () => {
    const rsp = await bind("01:00.1", "vm1");
    expect(rsp).toEqual({
      status: 409,
      body: { error: "TDI 01:00.1: its TDEV 01:00.0 is unauthenticated, not connected; connect it first" },
    });
    expect(await getTdi("01:00.1")).toMatchObject({
      status: 200,
      body: {
        bdf: "01:00.1",
        tdev: "01:00.0",
        boundTo: null,
        state: "unbound",
        tdispState: null,
        report: null,
      },
    });
    expect((await post("/v1/tdevs/01:00.0/connect")).status).toBe(200);
  });

  it("keeps an idle connected session alive with HEARTBEAT past twice the period", async () => {
    const { session } = (await t.topology()).tdevs[0]!;
    await sleep(2.5 * HEARTBEAT_PERIOD * 1000);
    expect((await getTdi("01:00.0")).body).toMatchObject({ tdispState: "CONFIG_UNLOCKED" });
    expect((await t.topology()).tdevs[0]).toMatchObject({ state: "connected", session });
  });

  it("binds the PF: locked with the host's offset, report verified, RUN; same VM no-op, other VM 409; unbind stops", async () => {
    const rsp = await bind("01:00.0", "vm1");
    expect(rsp).toEqual({
      status: 200,
      body: {
        bdf: "01:00.0",
        boundTo: "vm1",
        changed: true,
        tdispState: "RUN",
        reportDigest: expect.stringMatching(/^[0-9a-f]{64}$/),
      },
    });
    const { body: view } = await getTdi("01:00.0");
    expect(view).toMatchObject({
      boundTo: "vm1",
      state: "bound",
      tdispState: "RUN",
      reportDigest: rsp.body.reportDigest,
      mmioReportingOffset: `0x${HOST_MMIO_REPORTING_OFFSET.toString(16)}`,
    });
    // BAR0 whole; BAR2 split around the MSI-X table (page 0) and PBA (page 2).
    const bars = (await t.topology()).devices[0]!.functions[0]!.bars;
    const page = (bar: number, at = 0n) =>
      `0x${((BigInt(bars.find((b) => b.index === bar)!.address!) + HOST_MMIO_REPORTING_OFFSET + at) >> 12n).toString(16)}`;
    expect(view.report!.mmioRanges).toEqual([
      { firstPage: page(0), numberOfPages: 512, rangeAttributes: 0, rangeId: 0 },
      { firstPage: page(2), numberOfPages: 1, rangeAttributes: 1, rangeId: 2 },
      { firstPage: page(2, 0x1000n), numberOfPages: 1, rangeAttributes: 0, rangeId: 2 },
      { firstPage: page(2, 0x2000n), numberOfPages: 1, rangeAttributes: 2, rangeId: 2 },
      { firstPage: page(2, 0x3000n), numberOfPages: 1, rangeAttributes: 0, rangeId: 2 },
    ]);
    expect(await tdiEntry("01:00.0")).toEqual({
      bdf: "01:00.0",
      tdev: "01:00.0",
      boundTo: "vm1",
      state: "bound",
      tdispState: "RUN",
      reportDigest: rsp.body.reportDigest,
    });

    expect((await bind("01:00.0", "vm1")).body).toMatchObject({ changed: false, boundTo: "vm1" });
    expect(await bind("01:00.0", "vm2")).toEqual({
      status: 409,
      body: { error: "TDI 01:00.0 is bound to VM vm1" },
    });
    expect((await unbind("01:00.0")).body).toMatchObject({
      boundTo: null,
      changed: true,
      reportDigest: null,
    });
    expect((await getTdi("01:00.0")).body).toMatchObject({ state: "unbound", tdispState: "CONFIG_UNLOCKED" });
    expect((await unbind("01:00.0")).body).toMatchObject({ changed: false });
  });

  it("binds a VF through PF0's session: its share of the VF BAR, no MSI-X", async () => {
    expect((await bind("01:00.2", 7)).body).toMatchObject({ boundTo: 7, tdispState: "RUN" });
    const vf = (await t.topology()).devices[0]!.functions.find((f) => f.bdf === "01:00.2")!;
    const first = (BigInt(vf.bars[0]!.address!) + HOST_MMIO_REPORTING_OFFSET) >> 12n;
    expect((await getTdi("01:00.2")).body.report).toMatchObject({
      mmioRanges: [
        { firstPage: `0x${first.toString(16)}`, numberOfPages: 4, rangeAttributes: 0, rangeId: 0 },
      ],
    });
    expect((await getTdi("01:00.0")).body.tdispState).toBe("CONFIG_UNLOCKED");
    expect((await unbind("01:00.2")).status).toBe(200);
    expect((await getTdi("01:00.2")).body).toMatchObject({ boundTo: null, tdispState: "CONFIG_UNLOCKED" });
  });

  it("shows ERROR after a BAR write while RUN (as setpci would); unbind stops it from ERROR", async () => {
    expect((await bind("01:00.0", "vm1")).status).toBe(200);
    const bar0 = await control.cfgRead(PF, Header.BAR0, 4);
    await control.cfgWrite(PF, Header.BAR0, 4, (bar0 + 0x40_0000) >>> 0);
    await control.cfgWrite(PF, Header.BAR0, 4, bar0);
    expect((await getTdi("01:00.0")).body).toMatchObject({ boundTo: "vm1", tdispState: "ERROR" });
    expect(await tdiEntry("01:00.0")).toMatchObject({ tdispState: "ERROR", state: "bound" });
    expect((await unbind("01:00.0")).status).toBe(200);
    expect((await getTdi("01:00.0")).body).toMatchObject({ state: "unbound", tdispState: "CONFIG_UNLOCKED" });
  });

  it("shows CONFIG_UNLOCKED after a Function Level Reset; unbind then needs no STOP", async () => {
    expect((await bind("01:00.0", "vm1")).status).toBe(200);
    expect((await bind("01:00.1", "vm1")).status).toBe(200);
    const exp = await capability(control, PF, CapId.EXP);
    const devctl = await control.cfgRead(PF, exp + PciExp.DEVCTL, 2);
    await control.cfgWrite(PF, exp + PciExp.DEVCTL, 2, devctl | DevCtl.BCR_FLR);
    // A PF's FLR takes its VFs along.
    for (const bdf of ["01:00.0", "01:00.1"]) {
      expect((await getTdi(bdf)).body).toMatchObject({ boundTo: "vm1", tdispState: "CONFIG_UNLOCKED" });
      expect((await unbind(bdf)).body).toMatchObject({ changed: true, tdispState: "CONFIG_UNLOCKED" });
    }
  });

  it("answers a report that does not verify with 502 and the mismatch; the TDI is left unbound and stopped", async () => {
    // BAR0 moved behind the host's back: the report no longer matches what the host assigned.
    const bar0 = await control.cfgRead(PF, Header.BAR0, 4);
    await control.cfgWrite(PF, Header.BAR0, 4, (bar0 + 0x40_0000) >>> 0);
    try {
      expect(await bind("01:00.0", "vm1")).toEqual({
        status: 502,
        body: {
          error: expect.stringMatching(/does not verify: MMIO range 0 .* not within a BAR the host assigned/),
          mismatch: expect.stringMatching(/^MMIO range 0/),
        },
      });
      expect((await getTdi("01:00.0")).body).toMatchObject({
        state: "unbound",
        tdispState: "CONFIG_UNLOCKED",
      });
    } finally {
      await control.cfgWrite(PF, Header.BAR0, 4, bar0);
    }
  });

  it("binds, shows and unbinds with `doe-emu host bind|tdi|unbind`; `host status` shows the TDISP state", async () => {
    const cli = (...args: string[]) =>
      execFileAsync(process.execPath, [cliPath(), "host", ...args, "--api", formatEndpoint(t.api)]);
    const on = JSON.parse((await cli("bind", "01:00.3", "--vm", "12")).stdout);
    expect(on).toMatchObject({ bdf: "01:00.3", boundTo: 12, changed: true, tdispState: "RUN" });
    expect(JSON.parse((await cli("tdi", "01:00.3")).stdout)).toMatchObject({
      tdispState: "RUN",
      boundTo: 12,
    });
    const status = (await cli("status")).stdout;
    expect(status).toContain(
      `TDI  bound to VM 12  TDISP RUN  report ${on.reportDigest.slice(0, 16)}  (TDEV 01:00.0)`,
    );
    await expect(cli("bind", "01:00.3", "--vm", "other")).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("bind 01:00.3: TDI 01:00.3 is bound to VM 12"),
    });
    expect(JSON.parse((await cli("unbind", "01:00.3")).stdout)).toMatchObject({ changed: true });
    await expect(cli("tdi", "09:00.0")).rejects.toMatchObject({
      stderr: expect.stringContaining("no TDI 09:00.0"),
    });
  });

  it("disconnecting stops the bound TDIs first", async () => {
    expect((await bind("01:00.1", "vm1")).status).toBe(200);
    expect((await post("/v1/tdevs/01:00.0/disconnect")).status).toBe(200);
    expect(await tdiEntry("01:00.1")).toMatchObject({
      state: "unbound",
      boundTo: null,
      tdispState: "CONFIG_UNLOCKED",
    });
    expect((await getTdi("01:00.1")).body.tdispState).toBeNull();
    expect((await post("/v1/tdevs/01:00.0/connect")).status).toBe(200);
  });

  it("stays consistent when the device is killed during a bind: TDI and TDEV gone, API answers", async () => {
    const pending = bind("01:00.0", "vm1");
    await sleep(20);
    process.kill(t.devices[0]!.pid!, "SIGKILL");
    const rsp = await pending;
    expect([200, 404, 409, 502]).toContain(rsp.status);
    const view = await topologyReaches(t.api, (v) => v.devices.length === 0, 20_000);
    expect(view).toMatchObject({ devices: [], tdevs: [], tdis: [] });
    expect((await getTdi("01:00.0")).status).toBe(404);
  });
});

describe("TDI bind in-process", () => {
  const nic = parseDescription(nicEntry.description);

  it("answers a refused lock with 502 and the TDISP error; the TDI stays unbound and is stopped", async () => {
    await withHostAndDevice(nic, { bounceTimeoutMs: 20_000 }, async (host) => {
      const { registry } = host;
      const [pf] = [...registry.tdevs.keys()];
      expect(await host.connect(pf!)).toBe("connected");
      // Locked and running behind the registry's back, on the host's own session.
      const fn = registry.devices.values().next().value!.functions[0]!;
      await lockAndStart(registry.tdevs.get(pf!)!.link!, fn);
      const bdf = formatRoutingId(pf!);
      const rsp = await apiRequest(host.api, "POST", `/v1/tdis/${bdf}/bind`, { vm: "vm1" });
      expect(rsp).toEqual({
        status: 502,
        body: {
          error: `bind of ${bdf} failed: bind: TDISP LOCK_INTERFACE_REQUEST: TDISP_ERROR InvalidInterfaceState (ErrorData 0x0)`,
          tdispError: "InvalidInterfaceState",
        },
      });
      expect(registry.tdis.get(pf!)).toMatchObject({ state: { kind: "unbound" } });
      expect(await host.probeTdi(pf!)).toBe("CONFIG_UNLOCKED");
    });
  });

  it("a device stopped during a bind leaves no TDI binding and the link closed", async () => {
    const timing = { probeIntervalMs: 100, unreachableTimeoutMs: 300 };
    await withHostAndDevice(nic, timing, async (host, device) => {
      const { registry } = host;
      const [pf] = [...registry.tdevs.keys()];
      expect(await host.connect(pf!)).toBe("connected");
      const close = vi.spyOn(registry.tdevs.get(pf!)!.link!, "close");
      const binding = nextEvent(registry, "tdi-binding");
      const bind = host.bind(pf!, "vm1");
      await binding;
      await device.stop();
      await expect(bind).rejects.toThrow();
      await registryReaches(registry, () => registry.devices.size === 0);
      expect(close).toHaveBeenCalledOnce();
      expect([registry.tdis.size, registry.tdevs.size]).toEqual([0, 0]);
    });
  });

  it("refuses exchanges past MAX_WAITING on the held session (LinkBusyError: 503 in the API), serving the rest in turn", async () => {
    await withHostAndDevice(nic, { bounceTimeoutMs: 20_000 }, async (host) => {
      const [pf] = [...host.registry.tdevs.keys()];
      expect(await host.connect(pf!)).toBe("connected");
      const asks = await Promise.allSettled(
        Array.from({ length: MAX_WAITING + 4 }, () => host.probeTdi(pf!)),
      );
      expect(asks.filter((a) => a.status === "fulfilled").map((a) => a.value)).toEqual(
        Array(MAX_WAITING).fill("CONFIG_UNLOCKED"),
      );
      const refused = asks.filter((a) => a.status === "rejected").map((a) => a.reason);
      expect(refused).toHaveLength(4);
      for (const e of refused) expect(e).toBeInstanceOf(LinkBusyError);
    });
  });

  it("fails the TDEV with the reason and unbinds its TDIs when a HEARTBEAT fails", async () => {
    const description = parseDescription({ ...nicEntry.description, spdm: { heartbeatPeriod: 1 } });
    await withHostAndDevice(description, { bounceTimeoutMs: 20_000 }, async (host, device) => {
      const { registry } = host;
      const events: HostEvent[] = [];
      registry.on("event", (e) => events.push(e));
      const [pf] = [...registry.tdevs.keys()];
      expect(await host.connect(pf!)).toBe("connected");
      expect(await host.bind(pf!, "vm1")).toBe("bound");
      // GET_VERSION from another requester starts a new SPDM connection: the function's sessions end.
      const { requester, doe } = await connectRequester(
        device.mailboxes[0]!.endpoint,
        { timeoutMs: 20_000, exeMode: "CONTINUE" },
        true,
      );
      await authenticate(requester);
      doe.close();
      await registryReaches(registry, () => registry.tdevs.get(pf!)!.state === "failed");
      expect(registry.tdevs.get(pf!)).toMatchObject({
        authError: expect.stringMatching(/^link broken: HEARTBEAT failed/),
        ide: null,
      });
      expect(registry.tdevs.get(pf!)!.link).toBeUndefined();
      expect(registry.tdis.get(pf!)!.state).toEqual({ kind: "unbound" });
      expect(events).toContainEqual({
        event: "tdi-unbound",
        bdf: formatRoutingId(pf!),
        vm: "vm1",
        reason: expect.stringMatching(/^link broken: HEARTBEAT failed/),
      });
    });
  });
});

/** Config offset of the legacy capability `id` of the function at `rid`. */
async function capability(control: ControlClient, rid: number, id: number): Promise<number> {
  for (let at = (await control.cfgRead(rid, Header.CAPABILITY_LIST, 1)) & 0xfc; at; ) {
    if ((await control.cfgRead(rid, at, 1)) === id) return at;
    at = (await control.cfgRead(rid, at + CAP_LIST_NEXT, 1)) & 0xfc;
  }
  throw new Error(`no capability ${id}`);
}
