/**
 * The TSM connect step against the example topology, real processes: connect authenticates, holds
 * a KEY_EXCHANGE session, programs IDE keys with IDE-KM and enables the first selective stream,
 * which the device then reports Secure; disconnect undoes it. TDEVs without IDE or without a
 * secured mailbox are refused with 409.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Ide, IdeSel, IdeStreamState, IdeStreamSts, parseRoutingId } from "../../protocol/pci.js";
import { fieldOf } from "../../src/bits.js";
import { parseDescription } from "../../src/device/description.js";
import { cliPath } from "../../src/fixture/spawn-device.js";
import { type RunningTopology, startTopology } from "../../src/fixture/topology.js";
import { topologyView } from "../../src/host/api.js";
import { apiRequest } from "../../src/host/api-client.js";
import { CONNECT_STREAM_ID } from "../../src/host/connect.js";
import { ControlClient } from "../../src/host/control-client.js";
import { scanBus } from "../../src/host/scan.js";
import { formatEndpoint } from "../../src/net/framed.js";
import { withHostAndDevice } from "../support/host-device.js";
import { registryReaches } from "../support/host-events.js";

const execFileAsync = promisify(execFile);
const EXAMPLE = fileURLToPath(new URL("../../examples/topology.json", import.meta.url));

describe("TDEV connect and disconnect", () => {
  let t: RunningTopology;
  let control: ControlClient;
  /** The Status and Control registers of tee-nic's first selective stream (it has no Link IDE streams). */
  let stream: { ctl: number; sts: number };
  const nic = parseRoutingId("01:00.0")!;
  const post = (path: string, body?: unknown) => apiRequest(t.api, "POST", path, body);
  const tdevView = async (bdf: string) => (await t.topology()).tdevs.find((d) => d.bdf === bdf)!;

  beforeAll(async () => {
    t = await startTopology(EXAMPLE, { bounceTimeoutMs: 20_000, unreachableTimeoutMs: 20_000 });
    control = await ControlClient.connect(t.devices[0]!.control, { timeoutMs: 5000 });
    const fns = await scanBus((rid, off, w) => control.cfgRead(rid, off, w), 1);
    const ide = fns.find((f) => f.rid === nic)!.ideOffset!;
    stream = { ctl: ide + Ide.LINK_STREAM_0 + IdeSel.CTL, sts: ide + Ide.LINK_STREAM_0 + IdeSel.STS };
  });
  afterAll(async () => {
    control?.close();
    await t?.stop();
  });

  const streamState = async () => fieldOf(await control.cfgRead(nic, stream.sts, 4), IdeStreamSts.STATE);

  it("connects 01:00.0: session held, IDE stream Secure; again is a no-op; disconnect undoes it", async () => {
    expect(await tdevView("01:00.0")).toMatchObject({ connected: false, session: null, ide: null });
    const rsp = await post("/v1/tdevs/01:00.0/connect");
    expect(rsp.status).toBe(200);
    expect(rsp.body).toEqual({
      bdf: "01:00.0",
      connected: true,
      session: expect.stringMatching(/^0x[0-9a-f]{8}$/),
      ide: "secure",
      changed: true,
    });
    const session = (rsp.body as { session: string }).session;
    expect(await tdevView("01:00.0")).toMatchObject({
      state: "connected",
      connected: true,
      session,
      ide: "secure",
      auth: expect.objectContaining({ version: expect.any(String) }),
    });
    expect(await streamState()).toBe(IdeStreamState.SECURE);
    expect((await control.cfgRead(nic, stream.ctl, 4)) >>> 24).toBe(CONNECT_STREAM_ID);

    const again = await post("/v1/tdevs/01:00.0/connect", {});
    expect(again).toEqual({ status: 200, body: { ...(rsp.body as object), changed: false } });
    // A connected TDEV is not re-authenticated under its session.
    expect((await post("/v1/tdevs/01:00.0/authenticate")).status).toBe(409);

    const off = await post("/v1/tdevs/01:00.0/disconnect");
    expect(off).toEqual({
      status: 200,
      body: { bdf: "01:00.0", connected: false, session: null, ide: "insecure", changed: true },
    });
    expect(await tdevView("01:00.0")).toMatchObject({
      state: "authenticated",
      connected: false,
      session: null,
      ide: "insecure",
    });
    expect(await streamState()).toBe(IdeStreamState.INSECURE);
    expect((await post("/v1/tdevs/01:00.0/disconnect")).body).toMatchObject({ changed: false });

    // And again: the device takes fresh keys in a new session.
    const re = await post("/v1/tdevs/01:00.0/connect");
    expect(re.body).toMatchObject({ connected: true, ide: "secure" });
    expect(await streamState()).toBe(IdeStreamState.SECURE);
    expect((await post("/v1/tdevs/01:00.0/disconnect")).status).toBe(200);
  });

  it("connects and disconnects with `doe-emu host connect|disconnect`; `host status` shows it", async () => {
    const cli = (...args: string[]) =>
      execFileAsync(process.execPath, [cliPath(), "host", ...args, "--api", formatEndpoint(t.api)]);
    const on = JSON.parse((await cli("connect", "01:00.0")).stdout);
    expect(on).toMatchObject({ bdf: "01:00.0", connected: true, ide: "secure", changed: true });
    const status = (await cli("status")).stdout;
    expect(status).toContain(`TDEV connected SPDM 1.`);
    expect(status).toMatch(new RegExp(`session ${on.session} {2}IDE secure {2}bounce`));
    const off = JSON.parse((await cli("disconnect", "01:00.0")).stdout);
    expect(off).toMatchObject({ connected: false, ide: "insecure", changed: true });
    expect((await cli("status")).stdout).toMatch(/TDEV authenticated SPDM 1\.\d {2}IDE insecure/);
    await expect(cli("connect", "02:00.0")).rejects.toMatchObject({
      stderr: expect.stringMatching(/connect 02:00\.0: TDEV 02:00\.0 has no IDE capability/),
    });
  });

  it("refuses TDEVs without IDE or without a secured mailbox with 409", async () => {
    const noIde = await post("/v1/tdevs/02:00.0/connect");
    expect(noIde).toEqual({ status: 409, body: { error: expect.stringMatching(/no IDE capability/) } });
    const noSecured = await post("/v1/tdevs/02:00.1/connect");
    expect(noSecured).toEqual({ status: 409, body: { error: expect.stringMatching(/no secured/) } });
    expect(await tdevView("02:00.0")).toMatchObject({ connected: false, session: null, ide: null });
    expect((await post("/v1/tdevs/05:00.0/connect")).status).toBe(404);
  });
});

describe("TDEV connect in-process", () => {
  const nicDescription = JSON.parse(readFileSync(EXAMPLE, "utf8")).devices[0].description;

  it("answers a failing connect with 502 and the reason, leaving the TDEV failed and not connected", async () => {
    // Its IDE-KM port is not the one the host asks for: QUERY is refused.
    const fn = { ...nicDescription.functions[0], ide: { ...nicDescription.functions[0].ide, portIndex: 3 } };
    const description = parseDescription({ ...nicDescription, functions: [fn] });
    await withHostAndDevice(description, {}, async (host) => {
      const { registry } = host;
      const bdf = topologyView(registry).tdevs[0]!.bdf;
      const rsp = await apiRequest(host.api, "POST", `/v1/tdevs/${bdf}/connect`);
      expect(rsp).toEqual({ status: 502, body: { error: expect.stringMatching(/^connect of .*: .*QUERY/) } });
      expect(topologyView(registry).tdevs[0]).toMatchObject({
        state: "failed",
        connected: false,
        session: null,
        ide: null,
      });
    });
  });

  it("drops the TDEV's state and closes its held connection", async () => {
    const timing = { probeIntervalMs: 100, unreachableTimeoutMs: 300 };
    await withHostAndDevice(parseDescription(nicDescription), timing, async (host, device) => {
      const { registry } = host;
      const rid = [...registry.tdevs.keys()][0]!;
      expect(await host.connect(rid)).toBe("connected");
      const close = vi.spyOn(registry.tdevs.get(rid)!.link!, "close");
      await device.stop();
      await registryReaches(registry, () => registry.devices.size === 0);
      expect(close).toHaveBeenCalledOnce();
      expect(registry.tdevs.size).toBe(0);
    });
  });
});
