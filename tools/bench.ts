/**
 * `npm run bench`: a report, not a test. Each benchmark runs for a fixed time against real
 * processes on loopback and prints its rate; comparisons run in the same invocation so that the
 * machine's state is the same for both sides.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DoeType, encodeDiscoveryRequest, encodeDoeObject, PCI_SIG_VENDOR_ID } from "../protocol/doe.js";
import { encodeFrame, SocketCommand, TransportType } from "../protocol/socket.js";
import { DoeClient } from "../src/doe/client.js";
import { spawnDevice } from "../src/fixture/spawn-device.js";
import { SPDM_EMU_BIN, startResponder, stopResponders } from "../src/fixture/spdm-emu-responder.js";
import { startTopology } from "../src/fixture/topology.js";
import type { Endpoint } from "../src/net/framed.js";
import { authenticate } from "../src/requester/connection.js";
import { runRequester, withRequester } from "../src/requester/run.js";
import type { SpdmRequester } from "../src/spdm/requester.js";
import { endSession, heartbeat, openSession } from "../src/spdm/requester-session.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);

/**
 * Rates of several operations measured in alternating 200 ms slices over SECONDS each, so that a
 * change in machine load during the run touches every side of a comparison alike.
 */
async function interleaved(ops: readonly (() => Promise<unknown>)[]): Promise<number[]> {
  for (const op of ops) {
    const warmUntil = performance.now() + 200;
    while (performance.now() < warmUntil) await op();
  }
  const counts = ops.map(() => 0);
  const times = ops.map(() => 0);
  const slices = Math.max(1, Math.round((SECONDS * 1000) / 200));
  for (let s = 0; s < slices; s++) {
    for (const [i, op] of ops.entries()) {
      const start = performance.now();
      const end = start + 200;
      let n = 0;
      while (performance.now() < end) {
        await op();
        n++;
      }
      counts[i]! += n;
      times[i]! += performance.now() - start;
    }
  }
  return counts.map((n, i) => n / (times[i]! / 1000));
}

/** A plain echo server in its own process, so both sides of the comparison cross a process boundary. */
async function startEchoProcess(): Promise<{ port: number; stop: () => void }> {
  const code = `const s=require("net").createServer(c=>{c.setNoDelay(true);c.on("data",d=>c.write(d));c.on("error",()=>{})});
s.listen(0,"127.0.0.1",()=>console.log(s.address().port));`;
  const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve) =>
    createInterface({ input: child.stdout! }).once("line", resolve),
  );
  return { port: Number(line), stop: () => child.kill() };
}

/** A ping-pong of `size` bytes each way over a raw socket: the floor any framed protocol sits on. */
async function rawPingPong(
  port: number,
  size: number,
  msg: Buffer = Buffer.alloc(size, 0x5a),
): Promise<{ op: () => Promise<void>; close: () => void }> {
  const socket = net.connect({ port, host: "127.0.0.1" });
  await new Promise((r) => socket.once("connect", r));
  socket.setNoDelay(true);
  let got = 0;
  let done: (() => void) | undefined;
  socket.on("data", (d) => {
    got += d.length;
    if (got >= size) {
      got -= size;
      done?.();
    }
  });
  const op = () =>
    new Promise<void>((resolve) => {
      done = resolve;
      socket.write(msg);
    });
  return { op, close: () => socket.destroy() };
}

async function discoveryVsRaw(): Promise<string[]> {
  const dev = await spawnDevice();
  const echo = await startEchoProcess();
  try {
    const doe = await DoeClient.connect(dev.mailboxes[0]!.endpoint);
    const request = {
      vendorId: PCI_SIG_VENDOR_ID,
      type: DoeType.DISCOVERY,
      payload: encodeDiscoveryRequest({ index: 1, version: 0 }),
    };
    // A discovery exchange is a 24-byte frame each way (12-byte socket header + 12-byte DOE object).
    const raw = await rawPingPong(echo.port, 24);
    // The same raw client sending the discovery frame itself: the device process's share alone.
    const frame = encodeFrame({
      command: SocketCommand.NORMAL,
      transport: TransportType.PCI_DOE,
      payload: encodeDoeObject(request),
    });
    const rawToDevice = await rawPingPong(dev.mailboxes[0]!.endpoint.port, 24, frame);
    const [ours, floor, device] = await interleaved([() => doe.exchange(request), raw.op, rawToDevice.op]);
    doe.close();
    raw.close();
    rawToDevice.close();
    return [
      `DOE discovery round trips, DoeClient -> device process:  ${ours!.toFixed(0)}/s`,
      `raw TCP ping-pong of 24 bytes -> echo process:           ${floor!.toFixed(0)}/s`,
      `the raw client's discovery frame -> device process:      ${device!.toFixed(0)}/s`,
      `ratio ours/raw: ${(ours! / floor!).toFixed(2)} (goal >= 0.85); device alone: ${(device! / floor!).toFixed(2)}`,
    ];
  } finally {
    echo.stop();
    await dev.stop();
  }
}

/** DOE round trips to a device process capturing every connection (--pcap) against one that does not. */
async function captureOnVsOff(): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), "doe-emu-bench-pcap-"));
  const [plain, capturing] = await Promise.all([spawnDevice(), spawnDevice({ args: ["--pcap", dir] })]);
  try {
    const [off, on] = await Promise.all(
      [plain, capturing].map((d) => DoeClient.connect(d.mailboxes[0]!.endpoint)),
    );
    const request = {
      vendorId: PCI_SIG_VENDOR_ID,
      type: DoeType.DISCOVERY,
      payload: encodeDiscoveryRequest({ index: 1, version: 0 }),
    };
    const [withoutCapture, withCapture] = await interleaved([
      () => off!.exchange(request),
      () => on!.exchange(request),
    ]);
    off!.close();
    on!.close();
    return [
      `DOE discovery round trips, capture off: ${withoutCapture!.toFixed(0)}/s`,
      `DOE discovery round trips, capture on:  ${withCapture!.toFixed(0)}/s`,
      `cost of capturing: ${((1 - withCapture! / withoutCapture!) * 100).toFixed(1)} % (goal < 15 %)`,
    ];
  } finally {
    await Promise.all([plain.stop(), capturing.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Resident set size of a process, from /proc (Linux). */
function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return Number(kb) / 1024;
}

const TOPOLOGY_DEVICES = Number(process.env.BENCH_DEVICES ?? 64);

/** `launch` of many device processes: the time until the host has bound every TDEV/TDI, and RSS. */
async function launchMany(): Promise<string[]> {
  const devices = Array.from({ length: TOPOLOGY_DEVICES }, (_, i) => ({
    name: `dev${i}`,
    bus: i + 1,
    description: {},
  }));
  const start = performance.now();
  const t = await startTopology({ devices }, { readyTimeoutMs: 120_000 });
  const ms = performance.now() - start;
  try {
    const view = await t.topology();
    const rss = t.devices.map((d) => rssMiB(d.pid!));
    const mean = rss.reduce((a, b) => a + b, 0) / rss.length;
    return [
      `${TOPOLOGY_DEVICES} device processes + host to ${view.tdevs.length} TDEVs / ${view.tdis.length} TDIs bound: ${(ms / 1000).toFixed(2)} s (goal <= 3 s)`,
      `RSS per device process: mean ${mean.toFixed(1)} MiB, max ${Math.max(...rss).toFixed(1)} MiB (goal <= 60 MB); host ${rssMiB(t.host.pid).toFixed(1)} MiB`,
    ];
  } finally {
    await t.stop();
  }
}

/** DOE round trips through a TDEV's bouncer against the same mailbox directly. */
async function bounceVsDirect(): Promise<string[]> {
  const t = await startTopology({ devices: [{ name: "bench", bus: 1, description: {} }] });
  try {
    const direct = await DoeClient.connect(t.devices[0]!.mailboxes[0]!.endpoint);
    const bounced = await DoeClient.connect(t.tdevs[0]!.bounce);
    const request = {
      vendorId: PCI_SIG_VENDOR_ID,
      type: DoeType.DISCOVERY,
      payload: encodeDiscoveryRequest({ index: 1, version: 0 }),
    };
    const [viaBounce, viaDirect] = await interleaved([
      () => bounced.exchange(request),
      () => direct.exchange(request),
    ]);
    direct.close();
    bounced.close();
    return [
      `DOE discovery round trips through the bouncer: ${viaBounce!.toFixed(0)}/s`,
      `the same, directly to the mailbox:             ${viaDirect!.toFixed(0)}/s`,
      `ratio bounced/direct: ${(viaBounce! / viaDirect!).toFixed(2)} (goal >= 0.7)`,
    ];
  } finally {
    await t.stop();
  }
}

/** A responder to measure against: our device process, and DMTF's spdm_responder_emu when SPDM_EMU_BIN is set. */
interface Peer {
  name: string;
  endpoint: Endpoint;
  stop: () => Promise<unknown>;
}

async function peers(): Promise<Peer[]> {
  const dev = await spawnDevice();
  const list: Peer[] = [{ name: "doe-emu device", endpoint: dev.mailboxes[0]!.endpoint, stop: dev.stop }];
  if (SPDM_EMU_BIN) {
    const r = await startResponder();
    list.push({
      name: "spdm_responder_emu",
      endpoint: { host: "127.0.0.1", port: r.port },
      stop: stopResponders,
    });
  }
  return list;
}

/** Both peers measured alike, then each rate and (with DMTF's) the ratio. */
async function comparePeers(what: string, measure: (p: Peer) => Promise<number>): Promise<string[]> {
  const list = await peers();
  const rates: number[] = [];
  try {
    for (const p of list) rates.push(await measure(p));
  } finally {
    for (const p of list) await p.stop();
  }
  const lines = list.map((p, i) => `${what}, our requester -> ${p.name}: ${rates[i]!.toFixed(1)}/s`);
  if (rates.length === 2) lines.push(`ratio doe-emu/DMTF: ${(rates[0]! / rates[1]!).toFixed(2)}`);
  else lines.push("(set SPDM_EMU_BIN to compare with DMTF's spdm_responder_emu)");
  return lines;
}

/** Full authentication flows: VCA, digests, certificate chain, CHALLENGE, signed measurements. */
const authFlows = () =>
  comparePeers("authentication flows", async (p) => {
    // CONTINUE keeps DMTF's responder up for the next flow; ALL measures in one signed request.
    const [r] = await interleaved([
      () => runRequester(p.endpoint, { exeMode: "CONTINUE", measurementMode: "ALL" }),
    ]);
    return r!;
  });

/** On one connection with the certificate chain read (sessions need it), runs `body`. */
function onConnection<T>(p: Peer, body: (r: SpdmRequester) => Promise<T>): Promise<T> {
  const opts = { exeMode: "CONTINUE" as const, connectionSteps: ["DIGEST", "CERT"] as const };
  return withRequester(p.endpoint, opts, true, async (r) => {
    await authenticate(r);
    return body(r);
  });
}

/** KEY_EXCHANGE + FINISH + END_SESSION, back to back. */
const sessions = () =>
  comparePeers("KEY_EX sessions established and ended", (p) =>
    onConnection(p, async (r) => {
      const [rate] = await interleaved([
        async () => {
          const { session } = await openSession(r, { kind: "KEY_EX" });
          await endSession(r, session, 0);
        },
      ]);
      return rate!;
    }),
  );

/** HEARTBEAT inside a session against a plain CMA round trip (GET_DIGESTS) on the same connection. */
async function securedVsPlain(): Promise<string[]> {
  const list = await peers();
  const lines: string[] = [];
  try {
    for (const p of list) {
      const [secured, plain] = await onConnection(p, async (r) => {
        const { session } = await openSession(r, { kind: "KEY_EX" });
        const rates = await interleaved([
          () => heartbeat(r, session),
          () => r.exchange({ code: "GET_DIGESTS", version: r.connection.version }),
        ]);
        await endSession(r, session, 0);
        return rates;
      });
      lines.push(
        `${p.name}: secured HEARTBEAT ${secured!.toFixed(0)}/s, plain GET_DIGESTS ${plain!.toFixed(0)}/s (secured/plain ${(secured! / plain!).toFixed(2)})`,
      );
    }
  } finally {
    for (const p of list) await p.stop();
  }
  return lines;
}

const benches: [string, () => Promise<string[]>][] = [
  ["DOE transport", discoveryVsRaw],
  ["Capture overhead", captureOnVsOff],
  ["Topology launch", launchMany],
  ["Bouncer overhead", bounceVsDirect],
  ["SPDM authentication", authFlows],
  ["SPDM sessions", sessions],
  ["Secured vs plain round trips", securedVsPlain],
];

/** BENCH_ONLY=word runs the benchmarks whose name contains it. */
const only = process.env.BENCH_ONLY?.toLowerCase();

console.log(`doe-emu benchmarks (${SECONDS} s each; BENCH_SECONDS to change)\n`);
for (const [name, bench] of benches.filter(([n]) => !only || n.toLowerCase().includes(only))) {
  console.log(`== ${name}`);
  for (const line of await bench()) console.log(`  ${line}`);
}
