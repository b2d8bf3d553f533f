/**
 * Fault injection against real processes, one test per row of the README's "Faults and what the
 * host does": tee-nic under a host, each fault added through POST /v1/devices/{id}/faults, then
 * authenticate, connect or bind driven through the API; each row checks the documented outcome, the
 * injected count, and that the API keeps answering and the device serves again once the rule is
 * spent or cleared. The exit row comes last: the device is gone after it.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { parseDescription } from "../../src/device/description.js";
import { cliPath } from "../../src/fixture/spawn-device.js";
import { type RunningTopology, startTopology } from "../../src/fixture/topology.js";
import { apiRequest, topologyReaches, watchEvents } from "../../src/host/api-client.js";
import { ControlClient, DoeRegisterClient } from "../../src/host/control-client.js";
import { formatEndpoint } from "../../src/net/framed.js";
import { withHostAndDevice } from "../support/host-device.js";

const execFileAsync = promisify(execFile);

const EXAMPLE = fileURLToPath(new URL("../../examples/topology.json", import.meta.url));
const nicEntry = JSON.parse(readFileSync(EXAMPLE, "utf8")).devices[0];
/** How long the host waits for one answer of the device (--bounce-timeout); the error names it. */
const TIMEOUT_MS = 2000;
const TIMED_OUT = new RegExp(`: no response from \\S+ within ${TIMEOUT_MS} ms$`);
const TDEV = "01:00.0";

type Json = Record<string, unknown>;

describe("faults and what the host does", () => {
  let t: RunningTopology;
  const api = <T = Json>(method: "GET" | "POST" | "DELETE", path: string, body?: unknown) =>
    apiRequest<T>(t.api, method, path, body);
  const addFault = async (rule: Json) => {
    const rsp = await api("POST", "/v1/devices/tee-nic/faults", rule);
    expect(rsp.status).toBe(201);
    return rsp.body.id as number;
  };
  const injected = async () => (await api("GET", "/v1/devices/tee-nic/faults")).body.injected;
  const authenticate = () => api("POST", `/v1/tdevs/${TDEV}/authenticate`);
  const tdevState = async () => (await t.topology()).tdevs.find((d) => d.bdf === TDEV)?.state;
  /** The API still answers at once, and the device serves a clean authentication. */
  const recovers = async () => {
    expect((await api("GET", "/v1/topology")).status).toBe(200);
    expect((await authenticate()).status).toBe(200);
  };

  beforeAll(async () => {
    t = await startTopology(
      { devices: [nicEntry] },
      { bounceTimeoutMs: TIMEOUT_MS, unreachableTimeoutMs: 3000, probeIntervalMs: 200 },
    );
  });
  afterEach(async () => {
    await api("DELETE", "/v1/devices/tee-nic/faults");
  });
  afterAll(async () => {
    await t?.stop();
  });

  it("rules are added, listed with counters, shown in the topology, and cleared", async () => {
    const id = await addFault({ kind: "delay", ms: 1, protocol: "SPDM", code: "GET_VERSION", count: 1 });
    expect((await api("POST", "/v1/devices/tee-nic/faults", { kind: "delay" })).status).toBe(400);
    expect((await api("GET", "/v1/devices/nope/faults")).status).toBe(404);
    expect((await authenticate()).status).toBe(200);
    const list = await api<{ rules: Json[]; injected: number }>("GET", "/v1/devices/tee-nic/faults");
    expect(list.body).toMatchObject({
      device: "tee-nic",
      injected: 1,
      rules: [{ id, kind: "delay", injected: 1 }],
    });
    const device = (await t.topology()).devices.find((d) => d.id === "tee-nic");
    expect(device?.faults).toEqual({ rules: 1, injected: 1 });
    expect((await api("DELETE", "/v1/devices/tee-nic/faults")).body).toEqual({
      device: "tee-nic",
      cleared: 1,
    });
    await vi.waitFor(async () =>
      expect((await t.topology()).devices[0]?.faults).toEqual({ rules: 0, injected: 0 }),
    );
  });

  it("delay under the timeout: the request succeeds, later", async () => {
    await addFault({ kind: "delay", ms: 300, protocol: "SPDM", count: 2 });
    const start = Date.now();
    expect((await authenticate()).status).toBe(200);
    expect(Date.now() - start).toBeGreaterThanOrEqual(600);
    expect(await injected()).toBe(2);
  });

  it("delay past the timeout: 502 naming the timeout; the next request succeeds", async () => {
    await addFault({ kind: "delay", ms: TIMEOUT_MS + 500, protocol: "SPDM", count: 1 });
    const rsp = await authenticate();
    expect(rsp.status).toBe(502);
    expect(rsp.body.error).toMatch(TIMED_OUT);
    expect(await tdevState()).toBe("failed");
    await recovers();
  });

  it("stall: 502 naming the timeout; the next request succeeds", async () => {
    await addFault({ kind: "stall", protocol: "SPDM", code: "GET_CAPABILITIES", count: 1 });
    const rsp = await authenticate();
    expect(rsp.status).toBe(502);
    expect(rsp.body.error).toMatch(TIMED_OUT);
    await recovers();
  });

  it("ERROR Busy: the requester retries with back-off and succeeds; past its retries, 502", async () => {
    await addFault({ kind: "spdm-error", code: "GET_MEASUREMENTS", count: 2 });
    const start = Date.now();
    expect((await authenticate()).status).toBe(200);
    // 100 ms, then 200 ms.
    expect(Date.now() - start).toBeGreaterThanOrEqual(300);
    expect(await injected()).toBe(2);
    await api("DELETE", "/v1/devices/tee-nic/faults");
    await addFault({ kind: "spdm-error", code: "GET_DIGESTS" });
    const rsp = await authenticate();
    expect(rsp.status).toBe(502);
    expect(rsp.body.error).toMatch(/Busy/);
    expect(await injected()).toBe(4);
  });

  it("ResponseNotReady: RESPOND_IF_READY fetches the response and authentication succeeds", async () => {
    await addFault({ kind: "not-ready", code: "GET_MEASUREMENTS", count: 1 });
    expect((await authenticate()).status).toBe(200);
    expect(await injected()).toBe(1);
  });

  for (const [what, rule] of [
    ["drop", { kind: "drop", protocol: "SPDM", code: "GET_DIGESTS" }],
    ["corrupt DOE header", { kind: "corrupt", part: "header", protocol: "SPDM", code: "GET_DIGESTS" }],
    ["corrupt SPDM body", { kind: "corrupt", part: "body", protocol: "SPDM", code: "GET_DIGESTS" }],
    ["close", { kind: "close", protocol: "SPDM", code: "GET_DIGESTS" }],
  ] as const) {
    it(`${what}: 502 at once with the reason; the next request succeeds`, async () => {
      await addFault({ ...rule, count: 1 });
      const start = Date.now();
      const rsp = await authenticate();
      expect(rsp.status).toBe(502);
      expect(rsp.body.error).toMatch(/^authentication of 01:00.0 failed: /);
      expect(Date.now() - start).toBeLessThan(TIMEOUT_MS);
      expect(await injected()).toBe(1);
      await recovers();
    });
  }

  it("corrupt secured record tag: connect fails (502), TDEV failed; connect again succeeds", async () => {
    await addFault({ kind: "corrupt", protocol: "SECURED_SPDM", count: 1 });
    const rsp = await api("POST", `/v1/tdevs/${TDEV}/connect`);
    expect(rsp.status).toBe(502);
    expect(await tdevState()).toBe("failed");
    expect((await api("POST", `/v1/tdevs/${TDEV}/connect`)).status).toBe(200);
    expect((await api("POST", `/v1/tdevs/${TDEV}/disconnect`)).status).toBe(200);
  });

  it("IDE-KM KP_ACK failure: connect fails (502), TDEV failed; connect again succeeds", async () => {
    await addFault({ kind: "ide-km-fail", count: 1 });
    const rsp = await api("POST", `/v1/tdevs/${TDEV}/connect`);
    expect(rsp.status).toBe(502);
    expect(rsp.body.error).toMatch(/KP_ACK/);
    expect(await tdevState()).toBe("failed");
    expect(await injected()).toBe(1);
    expect((await api("POST", `/v1/tdevs/${TDEV}/connect`)).status).toBe(200);
  });

  it("TDI in ERROR: bind fails (502 with the TDISP error), TDI unbound; bind again succeeds", async () => {
    await addFault({ kind: "tdi-error", code: "START_INTERFACE_REQUEST", count: 1 });
    const rsp = await api("POST", `/v1/tdis/${TDEV}/bind`, { vm: 1 });
    expect(rsp.status).toBe(502);
    expect(rsp.body.tdispError).toBeDefined();
    expect((await t.topology()).tdis.find((x) => x.bdf === TDEV)?.boundTo).toBeNull();
    expect(await injected()).toBe(1);
    expect((await api("POST", `/v1/tdis/${TDEV}/bind`, { vm: 1 })).status).toBe(200);
    expect((await api("POST", `/v1/tdevs/${TDEV}/disconnect`)).status).toBe(200);
  });

  /** Connects and binds the PF, watches the TDEV's events, then breaks the session with `rule`. */
  const breakHeldSession = async (rule: Json) => {
    expect((await api("POST", `/v1/tdevs/${TDEV}/connect`)).status).toBe(200);
    expect((await api("POST", `/v1/tdis/${TDEV}/bind`, { vm: 1 })).status).toBe(200);
    const states: string[] = [];
    const watch = await watchEvents(t.api, ({ event: e }) => {
      if (e.event === "tdev-state" && e.bdf === TDEV) states.push(e.state);
    });
    await addFault({ ...rule, protocol: "SECURED_SPDM" });
    // The next exchange on the held session meets the fault.
    expect((await api("GET", `/v1/tdis/${TDEV}`)).status).toBe(502);
    return { states, watch };
  };

  for (const [what, rule] of [
    ["close", { kind: "close", count: 1 }],
    ["corrupt secured record tag", { kind: "corrupt", part: "tag", count: 1 }],
  ] as const) {
    it(`${what} on the held session: the host re-establishes it by itself; the TDI is left unbound, stopped`, async () => {
      const { states, watch } = await breakHeldSession(rule);
      try {
        const view = await topologyReaches(
          t.api,
          (v) => v.tdevs.find((d) => d.bdf === TDEV)?.state === "connected",
        );
        const tdev = view.tdevs.find((d) => d.bdf === TDEV)!;
        expect(tdev.session).not.toBeNull();
        expect(tdev.ide).toBe("secure");
        await vi.waitFor(() => expect(states).toEqual(["failed", "connecting", "connected"]));
        expect(view.tdis.find((x) => x.bdf === TDEV)?.boundTo).toBeNull();
        // Stopped over the new session: ERROR (the old session ended) back to CONFIG_UNLOCKED.
        expect((await api("GET", `/v1/tdis/${TDEV}`)).body.tdispState).toBe("CONFIG_UNLOCKED");
        expect(await injected()).toBe(1);
        expect((await api("POST", `/v1/tdis/${TDEV}/bind`, { vm: 1 })).status).toBe(200);
        expect((await api("POST", `/v1/tdevs/${TDEV}/disconnect`)).status).toBe(200);
      } finally {
        watch.close();
      }
    });
  }

  it("a held session that cannot be re-established: 3 tries with back-off, then the TDEV stays failed; connect again succeeds", async () => {
    const start = Date.now();
    const { states, watch } = await breakHeldSession({ kind: "close" });
    try {
      await vi.waitFor(
        () => expect(states).toEqual(["failed", ...Array(3).fill(["connecting", "failed"]).flat()]),
        {
          timeout: 10_000,
        },
      );
      // 100, 400 and 1600 ms before the tries.
      expect(Date.now() - start).toBeGreaterThanOrEqual(2100);
      const tdev = (await t.topology()).tdevs.find((d) => d.bdf === TDEV)!;
      expect(tdev.authError).toMatch(/^link broken: .*; not re-established after 3 tries$/);
      await api("DELETE", "/v1/devices/tee-nic/faults");
      expect((await api("POST", `/v1/tdevs/${TDEV}/connect`)).status).toBe(200);
      expect((await api("POST", `/v1/tdevs/${TDEV}/disconnect`)).status).toBe(200);
    } finally {
      watch.close();
    }
  });

  it("busy (DOE registers): Busy held past the register driver's timeout fails it; after its Abort the next works", async () => {
    const control = await ControlClient.connect(t.devices[0]!.control, { timeoutMs: 5000 });
    try {
      const { mailboxes } = await control.identity();
      const regs = new DoeRegisterClient(control, mailboxes[0]!.rid, mailboxes[0]!.doeCapOffset, {
        timeoutMs: 1000,
      });
      await addFault({ kind: "busy", ms: 300, protocol: "DISCOVERY", count: 1 });
      const start = Date.now();
      expect((await regs.discover()).length).toBe(3);
      expect(Date.now() - start).toBeGreaterThanOrEqual(300);
      await addFault({ kind: "busy", ms: 5000, count: 1 });
      await expect(regs.discover()).rejects.toThrow(/no response within 1000 ms/);
      expect((await regs.discover()).length).toBe(3);
      expect(await injected()).toBe(2);
    } finally {
      control.close();
    }
  });

  it("doe-emu fault adds, lists and clears, through the API and straight over the control wire", async () => {
    const fault = async (...args: string[]) =>
      JSON.parse((await execFileAsync(process.execPath, [cliPath(), "fault", ...args])).stdout);
    const viaApi = ["--api", formatEndpoint(t.api), "--device", "tee-nic"];
    const viaControl = ["--control", formatEndpoint(t.devices[0]!.control)];
    const rule = [
      "--kind",
      "delay",
      "--ms",
      "10",
      "--count",
      "3",
      "--protocol",
      "SPDM",
      "--code",
      "GET_VERSION",
    ];
    expect(await fault("add", ...viaApi, ...rule)).toEqual({ device: "tee-nic", id: expect.any(Number) });
    expect(await fault("add", ...viaControl, "--kind", "close", "--mailbox", "9")).toEqual({
      id: expect.any(Number),
    });
    expect((await authenticate()).status).toBe(200);
    const { rules } = await fault("list", ...viaControl);
    expect(rules).toEqual([
      expect.objectContaining({ kind: "delay", ms: 10, count: 3, injected: 1 }),
      expect.objectContaining({ kind: "close", injected: 0 }),
    ]);
    expect(await fault("list", ...viaApi)).toMatchObject({ injected: 1 });
    expect(await fault("clear", ...viaApi)).toEqual({ device: "tee-nic", cleared: 2 });
    await expect(fault("add", ...viaControl, "--kind", "delay")).rejects.toThrow(
      /ms: ms is for delay and busy/,
    );
  });

  it("exit: the device process ends; unreachable past its timeout, the host removes it and keeps answering", async () => {
    await addFault({ kind: "exit", protocol: "SPDM", code: "GET_VERSION", count: 1 });
    expect((await authenticate()).status).toBe(502);
    await vi.waitFor(async () => expect((await t.topology()).devices).toEqual([]), { timeout: 15_000 });
    expect((await api("GET", "/v1/devices/tee-nic/faults")).status).toBe(404);
    expect((await authenticate()).status).toBe(404);
  });
});

describe("faults from the description", () => {
  it("are armed from the start, and the host shows them once it has added the device", async () => {
    const description = parseDescription({
      name: "flaky",
      faults: [{ kind: "spdm-error", code: "GET_DIGESTS", count: 1 }],
    });
    await withHostAndDevice(description, { bounceTimeoutMs: 5000 }, async (host, device) => {
      expect(host.registry.devices.get("flaky")?.faults).toEqual({ rules: 1, injected: 0 });
      const rsp = await apiRequest(host.api, "POST", "/v1/tdevs/01:00.0/authenticate");
      expect(rsp.status).toBe(200);
      expect(device.faults.list()).toEqual([expect.objectContaining({ id: 1, injected: 1 })]);
    });
  });
});
