/** GET /v1/events: the registry's events as SSE, their bounds, the client and `doe-emu host events`. */
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDescription } from "../../src/device/description.js";
import { startDevice } from "../../src/device/device.js";
import { DoeClient } from "../../src/doe/client.js";
import { spawnCli } from "../../src/fixture/spawn-device.js";
import { type ApiTarget, startApi } from "../../src/host/api.js";
import {
  apiRequest,
  type EventWatch,
  type HostEventMessage,
  TopologyTimeout,
  topologyReaches,
  watchEvents,
} from "../../src/host/api-client.js";
import { type Host, startHost } from "../../src/host/host.js";
import { type HostEvent, Registry } from "../../src/host/registry.js";
import { silentLogger } from "../../src/log.js";
import type { Endpoint } from "../../src/net/framed.js";
import { formatEndpoint } from "../../src/net/framed.js";
import { withHostAndDevice } from "../support/host-device.js";
import { nextEvent } from "../support/host-events.js";
import { logLines } from "../support/log-lines.js";

const nic = parseDescription({
  name: "events-nic",
  bus: 6,
  functions: [{ sriov: { totalVfs: 2, numVfs: 1, vfEnable: true } }],
});

/** The raw text of GET `path` until `enough(text)` holds; the connection is then closed. */
function rawStream(
  api: Endpoint,
  path: string,
  enough: (text: string) => boolean,
  headers: http.OutgoingHttpHeaders = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: api.host, port: api.port, path, agent: false, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
        if (!enough(text)) return;
        req.destroy();
        resolve(text);
      });
    });
    req.once("error", reject);
  });
}

describe("host event stream", () => {
  let host: Host;

  beforeAll(async () => {
    // A device stopped closes its announce connection: that is its removal, no probe needed.
    host = await startHost({ log: silentLogger, hotplug: { host: "127.0.0.1", port: 0 } });
  });
  afterAll(() => host.stop());

  it("streams every registry event, in order, with increasing ids; a hotplug and its removal", async () => {
    const seen: HostEventMessage[] = [];
    const registryEvents: HostEvent[] = [];
    host.registry.on("event", (e) => registryEvents.push(e));
    const watch = await watchEvents(host.api, (m) => seen.push(m));
    const device = await startDevice({ description: nic, port: 0, host: host.hotplug!, log: silentLogger });
    const added = await topologyReaches(host.api, (v) => v.devices.length === 1 && v.tdis.length === 2);
    expect(added.devices[0]).toMatchObject({ id: "events-nic", state: "present" });
    await device.stop();
    await topologyReaches(host.api, (v) => v.devices.length === 0);
    watch.close();
    expect(await watch.closed).toBeUndefined();
    expect(seen.map((m) => m.event)).toEqual(registryEvents);
    const kinds = seen.map((m) => m.event.event);
    expect(kinds).toEqual([
      "tdev-added",
      "tdi-added",
      "tdi-added",
      "device-added",
      "tdi-removed",
      "tdi-removed",
      "tdev-removed",
      "device-removed",
    ]);
    const ids = seen.map((m) => m.id);
    expect(ids).toEqual(ids.map((_, i) => ids[0]! + i));
  });

  it("frames each event as id, event and data lines; ?since= or Last-Event-ID replays what is kept", async () => {
    const text = await rawStream(host.api, "/v1/events?since=0", (t) => t.includes("event: device-removed"));
    expect(text).toMatch(/^: doe-emu host events, last id \d+\n\n/);
    const frames = text.split("\n\n").filter((f) => f.startsWith("id:"));
    expect(frames[0]).toBe(
      'id: 1\nevent: tdev-added\ndata: {"event":"tdev-added","bdf":"06:00.0","device":"events-nic"}',
    );
    expect(frames.length).toBe(8);
    // EventSource's Last-Event-ID on a reconnect wins over the page's ?since=0.
    const last = await rawStream(host.api, "/v1/events?since=0", (t) => t.includes("event: device-removed"), {
      "last-event-id": "7",
    });
    expect(last.split("\n\n").filter((f) => f.startsWith("id:"))).toEqual([
      'id: 8\nevent: device-removed\ndata: {"event":"device-removed","device":"events-nic","reason":"announce connection closed"}',
    ]);
  });

  it("refuses a bad since (400) and another method (405)", async () => {
    expect((await apiRequest(host.api, "GET", "/v1/events?since=x")).status).toBe(400);
    expect((await apiRequest(host.api, "POST", "/v1/events")).status).toBe(405);
  });

  it("topologyReaches gives up with the last topology", async () => {
    const never = topologyReaches(host.api, () => false, 100);
    await expect(never).rejects.toBeInstanceOf(TopologyTimeout);
    await expect(never).rejects.toMatchObject({ last: { devices: [] } });
  });

  it("`doe-emu host events` prints each event on one line", async () => {
    const cli = await spawnCli(
      ["host", "events", "--api", formatEndpoint(host.api), "--since", "7"],
      (line) => (line.includes("device-removed") ? line : undefined),
    );
    await cli.stop();
    expect(cli.ready).toBe("8 device-removed device=events-nic reason=announce connection closed");
  });
});

describe("event stream bounds", () => {
  const registry = new Registry(silentLogger, () => Promise.reject(new Error("no bouncers here")));
  const logs = logLines("warn");
  let api: Awaited<ReturnType<typeof startApi>>;
  const refused = (i: number, reason = "x".repeat(10_000)): HostEvent => ({
    event: "device-refused",
    control: `127.0.0.1:${i}`,
    reason,
  });

  beforeAll(async () => {
    api = await startApi({
      host: "127.0.0.1",
      port: 0,
      tsm: { registry } as ApiTarget,
      log: logs.log,
      eventLimits: { maxClients: 2, maxBacklogBytes: 64 * 1024, heartbeatMs: 50, replay: 3 },
    });
  });
  afterAll(() => api.close());

  it("sends a heartbeat comment on a quiet stream", async () => {
    const text = await rawStream(api.address, "/v1/events", (t) => t.includes(": heartbeat\n\n"));
    expect(text).toContain(": heartbeat\n\n");
  });

  it("answers 503 past the most streams at once, and takes one again when a stream ends", async () => {
    const a = await watchEvents(api.address, () => undefined);
    const b = await watchEvents(api.address, () => undefined);
    const refusal = logs.next("event stream refused");
    await expect(watchEvents(api.address, () => undefined)).rejects.toThrow(/answered 503/);
    expect(await refusal).toMatchObject({ status: 503 });
    a.close();
    await a.closed;
    // The server sees the close a moment after the client does.
    let c: EventWatch | undefined;
    await expect
      .poll(async () => (c = await watchEvents(api.address, () => undefined).catch(() => undefined)))
      .toBeDefined();
    b.close();
    c?.close();
  });

  it("replays only the last `replay` events", async () => {
    for (let i = 0; i < 5; i++) registry.emit("event", refused(i, "r"));
    const text = await rawStream(api.address, "/v1/events?since=0", (t) => t.includes("127.0.0.1:4"));
    expect([...text.matchAll(/^id: (\d+)$/gm)].map((m) => m[1])).toEqual(["3", "4", "5"]);
  });

  it("drops a client that does not read once its backlog passes the cap, and logs it", async () => {
    const dropped = logs.next("event stream client does not read; dropped");
    const ended = new Promise<void>((resolve) => {
      const req = http.get({ ...api.address, path: "/v1/events", agent: false }, (res) => {
        res.pause();
        res.once("close", resolve);
        res.once("error", () => undefined);
        // Subscribed: flood it with far more than the socket buffers hold.
        for (let i = 0; i < 2000; i++) registry.emit("event", refused(i));
      });
      req.once("error", () => undefined);
    });
    expect(await dropped).toMatchObject({ level: 40 });
    await ended;
  });
});

describe("fault and bouncer events", () => {
  it("a rule armed is a faults event; a mailbox the bouncer cannot reach is a bouncer-error event", async () => {
    const tee = parseDescription({ name: "tee", functions: [{ teeIo: true }] });
    await withHostAndDevice(tee, { bounceTimeoutMs: 5000 }, async (host) => {
      const { registry } = host;
      const [tdev] = [...registry.tdevs.values()];
      const armed = nextEvent(registry, "faults");
      const rule = { kind: "close", protocol: "DISCOVERY", count: 1 };
      expect((await apiRequest(host.api, "POST", "/v1/devices/tee/faults", rule)).status).toBe(201);
      expect(await armed).toEqual({ event: "faults", device: "tee", rules: 1, injected: 0 });
      const failed = nextEvent(registry, "bouncer-error");
      // Connecting walks DOE discovery; the device closes the mailbox connection instead of answering.
      await DoeClient.connect(tdev!.bouncer.address, { timeoutMs: 10_000 }).then(
        (c) => c.close(),
        () => undefined,
      );
      expect(await failed).toMatchObject({ event: "bouncer-error", bdf: "01:00.0", device: "tee" });
    });
  });
});
