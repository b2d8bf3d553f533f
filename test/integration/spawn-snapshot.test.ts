/**
 * A device started the way spawnCli starts every device (the fixture, launcher, demo, benchmarks):
 * from the startup snapshot dist/device.blob, without NODE_EXTRA_CA_CERTS in its environment; and
 * a topology's host from dist/host.blob.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DoeClient } from "../../src/doe/client.js";
import { packageRoot, type SpawnedDevice, spawnDevice } from "../../src/fixture/spawn-device.js";
import { startTopology } from "../../src/fixture/topology.js";
import { authenticate } from "../../src/requester/connection.js";
import { withRequester } from "../../src/requester/run.js";
import { endSession, heartbeat, openSession } from "../../src/spdm/requester-session.js";

describe("a device spawned by spawnCli", () => {
  let dev: SpawnedDevice;
  const caCerts = process.env.NODE_EXTRA_CA_CERTS;
  beforeAll(async () => {
    // Set here whatever the environment: the child must not inherit it.
    process.env.NODE_EXTRA_CA_CERTS = "ca-bundle.pem";
    try {
      dev = await spawnDevice();
    } finally {
      if (caCerts === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
      else process.env.NODE_EXTRA_CA_CERTS = caCerts;
    }
  });
  afterAll(() => dev?.stop());

  it("runs from the startup snapshot, under the V8 flags it was built with, without NODE_EXTRA_CA_CERTS", () => {
    const argv = readFileSync(`/proc/${dev.pid}/cmdline`, "utf8").split("\0");
    const { flags } = JSON.parse(readFileSync(join(packageRoot(), "dist", "device.blob.json"), "utf8"));
    expect(flags).toContain("--max-semi-space-size=1");
    expect(argv.slice(1, flags.length + 4)).toEqual([
      ...flags,
      "--snapshot-blob",
      expect.stringMatching(/dist\/device\.blob$/),
      "device",
    ]);
    const env = readFileSync(`/proc/${dev.pid}/environ`, "utf8").split("\0");
    expect(env.some((v) => v.startsWith("NODE_EXTRA_CA_CERTS="))).toBe(false);
  });

  it("serves discovery and a KEY_EX session", async () => {
    const c = await DoeClient.connect(dev.mailboxes[0]!.endpoint);
    try {
      expect((await c.discover()).map((p) => p.type)).toEqual([0, 1, 2]);
    } finally {
      c.close();
    }
    // Generous timeout: the device generates its certificate chain during NEGOTIATE_ALGORITHMS.
    const opts = { exeMode: "CONTINUE", timeoutMs: 10_000, connectionSteps: ["DIGEST", "CERT"] } as const;
    await withRequester(dev.mailboxes[0]!.endpoint, opts, true, async (r) => {
      await authenticate(r);
      const { session } = await openSession(r, { kind: "KEY_EX" });
      await heartbeat(r, session);
      await endSession(r, session, 0);
    });
  });
});

describe("a topology's host", () => {
  it("runs from its startup snapshot and registers the devices", async () => {
    const t = await startTopology({ devices: [{ name: "one", bus: 1, description: {} }] });
    try {
      const argv = readFileSync(`/proc/${t.host.pid}/cmdline`, "utf8").split("\0");
      expect(argv.slice(1, 4)).toEqual([
        "--snapshot-blob",
        expect.stringMatching(/dist\/host\.blob$/),
        "host",
      ]);
      const view = await t.topology();
      expect(view.tdevs.map((d) => d.bdf)).toEqual(["01:00.0"]);
    } finally {
      await t.stop();
    }
  });
});
