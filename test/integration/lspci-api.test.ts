/**
 * lspci and setpci through the host (`--api`) against real processes, two devices and a host: the
 * same output as over each device's `--control`, writes that reach the device, and the API's
 * config routes (GET /v1/functions, GET/POST /v1/functions/{bdf}/config) with their 400s and 404s.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliPath } from "../../src/fixture/spawn-device.js";
import { type RunningTopology, startTopology } from "../../src/fixture/topology.js";
import { apiRequest } from "../../src/host/api-client.js";
import { formatEndpoint } from "../../src/net/framed.js";

const exec = promisify(execFile);

describe("lspci and setpci through the host's API", () => {
  let t: RunningTopology;
  const doeEmu = async (...args: string[]) => (await exec(process.execPath, [cliPath(), ...args])).stdout;
  const viaApi = (...args: string[]) => doeEmu(...args, "--api", formatEndpoint(t.api));
  const viaControl = (device: number, ...args: string[]) =>
    doeEmu(...args, "--control", formatEndpoint(t.devices[device]!.control));
  const fails = (...args: string[]) =>
    exec(process.execPath, [cliPath(), ...args]).then(
      () => expect.fail("succeeded"),
      (e: { stderr: string; code: number }) => ({ stderr: e.stderr, code: e.code }),
    );

  beforeAll(async () => {
    t = await startTopology(
      {
        devices: [
          {
            name: "accel",
            bus: 2,
            description: { functions: [{ bars: [{ index: 0, type: "mem32", size: 4096 }] }] },
          },
          {
            name: "nic",
            bus: 1,
            description: {
              functions: [
                {
                  bars: [{ index: 0, type: "mem64", size: "0x100000", prefetchable: true }],
                  ide: {},
                  sriov: { totalVfs: 2, numVfs: 2, vfEnable: true, vfBars: [{ index: 0, size: "0x4000" }] },
                },
              ],
            },
          },
        ],
      },
      // The last test stops a device: the host keeps it (and answers 502 for it) meanwhile.
      { unreachableTimeoutMs: 60_000 },
    );
  });
  afterAll(() => t?.stop());

  it("lspci --api prints what --control prints for each device, every function sorted by BDF", {
    timeout: 60_000,
  }, async () => {
    const flags = ["-vv", "-xxxx"];
    const [nic, accel] = [await viaControl(1, "lspci", ...flags), await viaControl(0, "lspci", ...flags)];
    const all = await viaApi("lspci", ...flags);
    expect(all).toBe(nic + accel);
    expect(all.match(/^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7](?= )/gm)).toEqual([
      "01:00.0",
      "01:00.1",
      "01:00.2",
      "02:00.0",
    ]);
    expect(await viaApi("lspci", ...flags, "-s", "02:00.0")).toBe(accel);
    expect(await viaApi("lspci", "-s", "03:00.0")).toBe("");
  });

  it("setpci --api writes through to the owning device and reads back", { timeout: 60_000 }, async () => {
    // The host's scan turned Memory Space on; this adds Bus Master and moves BAR 0 (4K, so fe001000).
    await viaApi("setpci", "-s", "02:00.0", "COMMAND=0x4:0x4", "BASE_ADDRESS_0=0xfe001fff");
    const regs = ["COMMAND", "BASE_ADDRESS_0", "CAP_EXP+2.w"];
    const read = await viaApi("setpci", "-s", "02:00.0", ...regs);
    expect(read).toMatch(/^0006\nfe001000\n[0-9a-f]{4}\n$/);
    expect(read).toBe(await viaControl(0, "setpci", "-s", "02:00.0", ...regs));
  });

  it("a function the host does not know, and a bad choice of --api/--control, are one clear line and exit code 1", async () => {
    const api = ["--api", formatEndpoint(t.api)];
    expect(await fails("setpci", "-s", "03:00.0", "COMMAND", ...api)).toEqual({
      stderr: "doe-emu: no such device 03:00.0\n",
      code: 1,
    });
    const control = ["--control", formatEndpoint(t.devices[0]!.control)];
    const oneOf = "doe-emu: give one of --control HOST:PORT (a device) and --api ADDR:PORT (the host)\n";
    expect(await fails("lspci", ...api, ...control)).toEqual({ stderr: oneOf, code: 1 });
    expect(await fails("setpci", "-s", "02:00.0", "COMMAND")).toEqual({ stderr: oneOf, code: 1 });
  });

  it("GET /v1/functions and the config routes answer, and refuse bad requests with 400, 404 and 405", async () => {
    const get = (path: string) => apiRequest(t.api, "GET", path);
    const post = (body: unknown, bdf = "02:00.0") =>
      apiRequest(t.api, "POST", `/v1/functions/${bdf}/config`, body);
    const { body: list } = await get("/v1/functions");
    expect(list).toEqual({
      functions: [
        { bdf: "01:00.0", device: expect.any(String), vendorId: 0x1b36, deviceId: 0xde00, pf: null },
        { bdf: "01:00.1", device: expect.any(String), vendorId: 0x1b36, deviceId: 0xde00, pf: "01:00.0" },
        { bdf: "01:00.2", device: expect.any(String), vendorId: 0x1b36, deviceId: 0xde00, pf: "01:00.0" },
        { bdf: "02:00.0", device: expect.any(String), vendorId: 0x1b36, deviceId: 0xde00, pf: null },
      ],
    });

    const whole = await get("/v1/functions/02:00.0/config");
    expect(whole.status).toBe(200);
    expect(whole.body).toMatchObject({ bdf: "02:00.0", offset: 0, length: 4096 });
    const data = Buffer.from((whole.body as { data: string }).data, "hex");
    expect(data.length).toBe(4096);
    expect(data.readUInt16LE(0)).toBe(0x1b36);
    expect((await get("/v1/functions/02%3A00.0/config?offset=0x1&length=3")).body).toEqual({
      bdf: "02:00.0",
      offset: 1,
      length: 3,
      data: data.subarray(1, 4).toString("hex"),
    });

    expect(await post({ offset: 0x3c, width: 1, value: 0x5a })).toEqual({
      status: 200,
      body: { bdf: "02:00.0", offset: 0x3c, width: 1, value: 0x5a },
    });
    // A read-only register: the answer is what the device kept.
    expect((await post({ offset: 0, width: 2, value: 0 })).body).toMatchObject({ value: 0x1b36 });

    for (const query of [
      "offset=4096",
      "offset=4000&length=100",
      "length=0",
      "length=-1",
      "offset=x",
      "size=4",
    ]) {
      const rsp = await get(`/v1/functions/02:00.0/config?${query}`);
      expect([query, rsp.status]).toEqual([query, 400]);
    }
    for (const body of [
      { offset: 2, width: 4, value: 0 },
      { offset: 4096, width: 1, value: 0 },
      { offset: 4, width: 3, value: 0 },
      { offset: 4, width: 2, value: 0x10000 },
      { offset: 4, width: 1, value: -1 },
      { offset: 4, width: 1 },
      { offset: 4, width: 1, value: 0, extra: 1 },
      undefined,
    ]) {
      const rsp = await post(body);
      expect([body, rsp.status]).toEqual([body, 400]);
      expect(rsp.body).toEqual({ error: expect.any(String) });
    }
    expect((await post({ offset: 2, width: 4, value: 0 })).body).toEqual({
      error: "offset 2 is not aligned to width 4",
    });
    expect((await get("/v1/functions/03:00.0/config")).status).toBe(404);
    expect((await post({ offset: 4, width: 2, value: 0 }, "03:00.0")).status).toBe(404);
    expect((await get("/v1/functions/zz/config")).status).toBe(404);
    expect((await apiRequest(t.api, "POST", "/v1/functions")).status).toBe(405);
  });

  it("a device that does not answer is a 502, and lspci --api says so in one line", async () => {
    await t.devices[0]!.stop();
    const rsp = await apiRequest(t.api, "GET", "/v1/functions/02:00.0/config?length=4");
    expect(rsp).toEqual({
      status: 502,
      body: { error: expect.stringMatching(/^config read of 02:00.0 failed: /) },
    });
    const { stderr, code } = await fails("lspci", "--api", formatEndpoint(t.api));
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /^doe-emu: GET \/v1\/functions\/02:00.0\/config\?offset=0&length=256: config read of 02:00.0 failed: .*\n$/,
    );
  });
});
