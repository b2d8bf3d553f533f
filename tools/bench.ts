/**
 * `npm run bench`: a report, not a test. Each benchmark runs for a fixed time against real
 * processes on loopback and prints its rate; comparisons run in the same invocation so that the
 * machine's state is the same for both sides.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { encodeDoeObject } from "../protocol/doe.js";
import { decodePcap } from "../protocol/pcap.js";
import { encodeFrame, SocketCommand, TEST_CLIENT_HELLO, TransportType } from "../protocol/socket.js";
import { DoeClient } from "../src/doe/client.js";
import { discoveryRequest } from "../src/doe/discovery.js";
import { processCpuMs, processMemory, processUsage } from "../src/fixture/process-usage.js";
import { packageRoot, spawnDevice } from "../src/fixture/spawn-device.js";
import {
  RESPONDER_BASE_ARGS,
  SPDM_EMU_BIN,
  startResponder,
  stopResponders,
} from "../src/fixture/spdm-emu-responder.js";
import { startTopology } from "../src/fixture/topology.js";
import { apiRequest, watchEvents } from "../src/host/api-client.js";
import type { Endpoint } from "../src/net/framed.js";
import { APP_DEFAULTS, ideKmStart, ideKmStop, keyTargets, tdispBindCycle } from "../src/requester/app.js";
import { authenticate } from "../src/requester/connection.js";
import { runRequester, withRequester } from "../src/requester/run.js";
import type { SpdmRequester } from "../src/spdm/requester.js";
import { SESSION_DEFAULTS } from "../src/spdm/requester-handshake.js";
import { ideKmQuery } from "../src/spdm/requester-ide-km.js";
import { endSession, heartbeat, openSession } from "../src/spdm/requester-session.js";
import { tdispCapabilities, tdispVersion } from "../src/spdm/requester-tdisp.js";
import type { SecureSession } from "../src/spdm/session.js";

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

/**
 * A Node script serving on a free loopback port in its own process (it prints the port), so that
 * both sides of a comparison cross a process boundary.
 */
async function startScript(code: string): Promise<{ port: number; pid: number; stop: () => void }> {
  const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve) =>
    createInterface({ input: child.stdout! }).once("line", resolve),
  );
  return { port: Number(line), pid: child.pid!, stop: () => child.kill() };
}

/** A plain echo server in its own process. */
const startEchoProcess = () =>
  startScript(`const s=require("net").createServer(c=>{c.setNoDelay(true);c.on("data",d=>c.write(d));c.on("error",()=>{})});
s.listen(0,"127.0.0.1",()=>console.log(s.address().port));`);

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

/**
 * CPU per exchange (us) of each op, on this process's side (the clients) and its server process's
 * side (/proc), over 10,000 exchanges per benchmark second, run in turns of a tenth of that.
 */
async function cpuPerExchange(
  ops: readonly { op: () => Promise<unknown>; serverPid: number }[],
): Promise<{ client: number; server: number }[]> {
  const turn = 1000 * SECONDS;
  const sums = ops.map(() => ({ client: 0, server: 0 }));
  for (let t = 0; t < 10; t++)
    for (const [i, { op, serverPid }] of ops.entries()) {
      const client = process.cpuUsage();
      const server = processCpuMs(serverPid);
      for (let n = 0; n < turn; n++) await op();
      const used = process.cpuUsage(client);
      sums[i]!.client += used.user + used.system;
      sums[i]!.server += (processCpuMs(serverPid) - server) * 1000;
    }
  return sums.map(({ client, server }) => ({ client: client / (10 * turn), server: server / (10 * turn) }));
}

async function discoveryVsRaw(): Promise<string[]> {
  const dev = await spawnDevice();
  const echo = await startEchoProcess();
  try {
    const doe = await DoeClient.connect(dev.mailboxes[0]!.endpoint);
    const request = discoveryRequest(1);
    // A discovery exchange is a 24-byte frame each way (12-byte socket header + 12-byte DOE object).
    const raw = await rawPingPong(echo.port, 24);
    // The same raw client sending the discovery frame itself: the device process's share alone.
    const frame = encodeFrame({
      command: SocketCommand.NORMAL,
      transport: TransportType.PCI_DOE,
      payload: encodeDoeObject(request),
    });
    const rawToDevice = await rawPingPong(dev.mailboxes[0]!.endpoint.port, 24, frame);
    const ops = [() => doe.exchange(request), raw.op, rawToDevice.op];
    const [ours, floor, device] = await interleaved(ops);
    const cpu = await cpuPerExchange(ops.map((op, i) => ({ op, serverPid: i === 1 ? echo.pid : dev.pid })));
    const cpuLine = (i: number) => `client ${cpu[i]!.client.toFixed(1)}, server ${cpu[i]!.server.toFixed(1)}`;
    doe.close();
    raw.close();
    rawToDevice.close();
    return [
      `DOE discovery round trips, DoeClient -> device process:  ${ours!.toFixed(0)}/s`,
      `raw TCP ping-pong of 24 bytes -> echo process:           ${floor!.toFixed(0)}/s`,
      `the raw client's discovery frame -> device process:      ${device!.toFixed(0)}/s`,
      `ratio ours/raw: ${(ours! / floor!).toFixed(2)} (goal >= 0.85); device alone: ${(device! / floor!).toFixed(2)} (goal >= 0.9)`,
      `CPU per exchange (us): DoeClient -> device: ${cpuLine(0)}; raw -> echo: ${cpuLine(1)}; raw -> device: ${cpuLine(2)}`,
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
    const request = discoveryRequest(1);
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

const rssMiB = (pid: number) => processUsage(pid).rssMiB;

const TOPOLOGY_DEVICES = Number(process.env.BENCH_DEVICES ?? 64);
const MANY_DEVICES = 256;

/**
 * `launch` of `n` default device processes and the host: the time until the host has bound every
 * TDEV/TDI, and the RSS of each process then.
 */
async function launchDevices(n: number) {
  // Buses 1..255, then 0: one bus per device, so 256 fit.
  const devices = Array.from({ length: n }, (_, i) => ({
    name: `dev${i}`,
    bus: (i + 1) % 256,
    description: {},
  }));
  const start = performance.now();
  const t = await startTopology({ devices }, { readyTimeoutMs: 300_000 });
  const ms = performance.now() - start;
  try {
    const view = await t.topology();
    const memory = t.devices.map((d) => processMemory(d.pid!));
    return { ms, view, memory, rss: memory.map((m) => m.rssMiB), hostRss: rssMiB(t.host.pid) };
  } finally {
    await t.stop();
  }
}

/** `launch` of many device processes: the time until the host has bound every TDEV/TDI, and RSS. */
async function launchMany(): Promise<string[]> {
  const { ms, view, memory, rss, hostRss } = await launchDevices(TOPOLOGY_DEVICES);
  const mean = (xs: number[]) => (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1);
  return [
    `${TOPOLOGY_DEVICES} device processes + host to ${view.tdevs.length} TDEVs / ${view.tdis.length} TDIs bound: ${(ms / 1000).toFixed(2)} s (goal <= 3 s)`,
    `RSS per device process: mean ${mean(rss)} MiB, max ${Math.max(...rss).toFixed(1)} MiB (goal <= 50 MiB); host ${hostRss.toFixed(1)} MiB`,
    `  of which its own: PSS mean ${mean(memory.map((m) => m.pssMiB))} MiB, private mean ${mean(memory.map((m) => m.privateMiB))} MiB (the rest is the node binary's pages, shared)`,
  ];
}

/** 256 device processes: they start and register without error (startTopology rejects on any); time and memory. */
async function launchManyMore(): Promise<string[]> {
  const { ms, view, memory, rss, hostRss } = await launchDevices(MANY_DEVICES);
  const devices = rss.reduce((a, b) => a + b, 0);
  const pss = memory.reduce((a, m) => a + m.pssMiB, 0);
  return [
    `${MANY_DEVICES} device processes + host to ${view.devices.length} devices, ${view.tdevs.length} TDEVs / ${view.tdis.length} TDIs bound: ${(ms / 1000).toFixed(2)} s, no error (goal: no error)`,
    `total RSS: ${((devices + hostRss) / 1024).toFixed(2)} GiB (devices ${(devices / 1024).toFixed(2)} GiB, mean ${(devices / rss.length).toFixed(1)} MiB; host ${hostRss.toFixed(1)} MiB)`,
    `devices' total PSS (shared pages counted once): ${(pss / 1024).toFixed(2)} GiB`,
  ];
}

/** What every integration suite's beforeAll pays: startTopology of the example topology. */
async function exampleTopology(): Promise<string[]> {
  const file = join(packageRoot(), "examples", "topology.json");
  const runs = 5;
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    const t = await startTopology(file);
    times.push(performance.now() - start);
    await t.stop();
  }
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  return [
    `startTopology(examples/topology.json), every TDEV/TDI registered: median ${s(median(times))}, min ${s(Math.min(...times))} over ${runs} runs (goal <= 0.5 s)`,
  ];
}

/** A bare Node byte proxy in its own process: each connection piped to `target`, nothing decoded. */
const startPipeProxy = (target: Endpoint) =>
  startScript(`const net=require("net");const s=net.createServer(c=>{const u=net.connect(${target.port},${JSON.stringify(target.host)});
c.setNoDelay(true);u.setNoDelay(true);c.pipe(u);u.pipe(c);c.on("error",()=>u.destroy());u.on("error",()=>c.destroy())});
s.listen(0,"127.0.0.1",()=>console.log(s.address().port));`);

const STARTUP_SPAWNS = Number(process.env.BENCH_SPAWNS ?? 10);

/**
 * Device processes started as spawnCli starts them (from the startup snapshot): CPU and wall time
 * to "ready", RSS idle, and RSS while serving a held KEY_EX session doing heartbeats.
 */
async function deviceStartup(): Promise<string[]> {
  const cpu: number[] = [];
  const wall: number[] = [];
  const idle: number[] = [];
  for (let i = 0; i < STARTUP_SPAWNS; i++) {
    const start = performance.now();
    const dev = await spawnDevice();
    wall.push(performance.now() - start);
    cpu.push(processCpuMs(dev.pid));
    await sleep(500);
    idle.push(rssMiB(dev.pid));
    await dev.stop();
  }
  const dev = await spawnDevice();
  let serving = 0;
  try {
    await onConnection(
      { name: "device", endpoint: dev.mailboxes[0]!.endpoint, stop: dev.stop },
      async (r) => {
        const { session } = await openSession(r, { kind: "KEY_EX" });
        const until = performance.now() + 1000;
        while (performance.now() < until) await heartbeat(r, session);
        serving = rssMiB(dev.pid);
        await endSession(r, session, 0);
      },
    );
  } finally {
    await dev.stop();
  }
  const n = `median of ${STARTUP_SPAWNS} spawns (BENCH_SPAWNS)`;
  return [
    `CPU to "ready": ${median(cpu)} ms, min ${Math.min(...cpu)} ms, ${n} (goal <= 70 ms, node's own ~40 ms included)`,
    `wall time to "ready": ${median(wall).toFixed(0)} ms, min ${Math.min(...wall).toFixed(0)} ms`,
    `RSS idle: median ${median(idle).toFixed(1)} MiB, max ${Math.max(...idle).toFixed(1)} MiB; serving a KEY_EX session with heartbeats: ${serving.toFixed(1)} MiB (goal <= 50 MiB)`,
  ];
}

/**
 * DOE round trips through a TDEV's bouncer against the same mailbox directly, and beside them, in
 * the same interleaved run, a raw client's discovery frame through a bare byte proxy process against
 * the same frame sent directly: what any process in between costs, the bouncer's floor.
 */
async function bounceVsDirect(): Promise<string[]> {
  const t = await startTopology({ devices: [{ name: "bench", bus: 1, description: {} }] });
  const mailbox = t.devices[0]!.mailboxes[0]!.endpoint;
  const proxy = await startPipeProxy(mailbox);
  try {
    const direct = await DoeClient.connect(mailbox);
    const bounced = await DoeClient.connect(t.tdevs[0]!.bounce);
    const request = discoveryRequest(1);
    const frame = encodeFrame({
      command: SocketCommand.NORMAL,
      transport: TransportType.PCI_DOE,
      payload: encodeDoeObject(request),
    });
    const rawProxied = await rawPingPong(proxy.port, frame.length, frame);
    const rawDirect = await rawPingPong(mailbox.port, frame.length, frame);
    const [viaBounce, viaDirect, viaProxy, rawViaDirect] = await interleaved([
      () => bounced.exchange(request),
      () => direct.exchange(request),
      rawProxied.op,
      rawDirect.op,
    ]);
    direct.close();
    bounced.close();
    rawProxied.close();
    rawDirect.close();
    return [
      `DOE discovery round trips through the bouncer: ${viaBounce!.toFixed(0)}/s`,
      `the same, directly to the mailbox:             ${viaDirect!.toFixed(0)}/s`,
      `raw discovery frames through a bare byte proxy: ${viaProxy!.toFixed(0)}/s, directly: ${rawViaDirect!.toFixed(0)}/s`,
      `ratio bounced/direct: ${(viaBounce! / viaDirect!).toFixed(2)} (goal >= 0.7); proxied/direct: ${(viaProxy! / rawViaDirect!).toFixed(2)}`,
    ];
  } finally {
    proxy.stop();
    await t.stop();
  }
}

/** A responder to measure against: our device process, and DMTF's spdm_responder_emu when SPDM_EMU_BIN is set. */
interface Peer {
  name: string;
  endpoint: Endpoint;
  stop: () => Promise<unknown>;
}

async function peers(deviceArgs: string[] = []): Promise<Peer[]> {
  const dev = await spawnDevice({ args: deviceArgs });
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

/** Each peer's rate and, with DMTF's, the ratio. */
function peerLines(what: string, list: readonly Peer[], rates: readonly number[]): string[] {
  const lines = list.map((p, i) => `${what}, our requester -> ${p.name}: ${rates[i]!.toFixed(1)}/s`);
  if (rates.length === 2) lines.push(`ratio doe-emu/DMTF: ${(rates[0]! / rates[1]!).toFixed(2)}`);
  else lines.push("spdm_responder_emu: skipped: SPDM_EMU_BIN not set");
  return lines;
}

/** Both peers measured alike, one after the other. */
async function comparePeers(what: string, measure: (p: Peer) => Promise<number>): Promise<string[]> {
  const list = await peers();
  const rates: number[] = [];
  try {
    for (const p of list) rates.push(await measure(p));
  } finally {
    for (const p of list) await p.stop();
  }
  return peerLines(what, list, rates);
}

/**
 * How every benchmark's requester runs: CONTINUE keeps DMTF's responder up for the next connection;
 * a generous timeout, so that a busy machine slows the report down rather than failing it.
 */
const REQUESTER = { exeMode: "CONTINUE", timeoutMs: 10_000 } as const;

/** Full authentication flows: VCA, digests, certificate chain, CHALLENGE, signed measurements. */
const authFlows = () =>
  comparePeers("authentication flows", async (p) => {
    // ALL measures in one signed request.
    const [r] = await interleaved([() => runRequester(p.endpoint, { ...REQUESTER, measurementMode: "ALL" })]);
    return r!;
  });

/** On one connection with the certificate chain read (sessions need it), runs `body`. */
function onConnection<T>(p: Peer, body: (r: SpdmRequester) => Promise<T>): Promise<T> {
  const opts = { ...REQUESTER, connectionSteps: ["DIGEST", "CERT"] as const };
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

/**
 * Our device as DMTF's requester finds it (examples/dmtf-requester.json: FunctionID 0xBEEF names
 * function 0) and, when DMTF's tools are there, with the ecp384 chain DMTF's responder has.
 */
function teeDeviceArgs(): string[] {
  const config = ["--config", join(packageRoot(), "examples", "dmtf-requester.json")];
  if (!SPDM_EMU_BIN) return config;
  const dir = join(SPDM_EMU_BIN, "ecp384");
  const chain = ["--cert-chain", join(dir, "bundle_responder.certchain.der")];
  return [...config, ...chain, "--private-key", join(dir, "end_responder.key")];
}

/** The six keys a connect programs: DMTF's port, stream 0 (the Stream ID registers' reset value). */
const KEY_TARGETS = keyTargets(APP_DEFAULTS.portIndex);

/**
 * In a new KEY_EX session: IDE-KM QUERY, the six keys programmed and going (as a TSM connect
 * leaves them), `body`, then K_SET_STOP ×6 and END_SESSION (as a disconnect).
 */
async function connected<T>(r: SpdmRequester, body: (s: SecureSession) => Promise<T>): Promise<T> {
  const { session } = await openSession(r, { kind: "KEY_EX" });
  await ideKmQuery(r, session, APP_DEFAULTS.portIndex);
  await ideKmStart(r, session, KEY_TARGETS);
  const result = await body(session);
  await ideKmStop(r, session, KEY_TARGETS);
  await endSession(r, session, SESSION_DEFAULTS.endSessionAttributes);
  return result;
}

/** Rates of the op each peer's `hold` gives, interleaved while every peer holds its own. */
async function interleavedPeers(
  what: string,
  hold: <T>(p: Peer, body: (op: () => Promise<unknown>) => Promise<T>) => Promise<T>,
): Promise<string[]> {
  const list = await peers(teeDeviceArgs());
  const holdFrom = (i: number, ops: (() => Promise<unknown>)[]): Promise<number[]> =>
    i === list.length ? interleaved(ops) : hold(list[i]!, (op) => holdFrom(i + 1, [...ops, op]));
  try {
    return peerLines(what, list, await holdFrom(0, []));
  } finally {
    for (const p of list) await p.stop();
  }
}

/**
 * A TSM connect at the SPDM level (host/connect.ts without the IDE registers) and its disconnect, on
 * a fresh mailbox connection each: authenticate() with its default steps as connectTdev runs it (VCA,
 * certificates, CHALLENGE, measurements), then connected() with nothing in between.
 */
const tdevConnects = () =>
  interleavedPeers("TDEV connect+disconnect cycles", (p, body) =>
    body(() =>
      withRequester(p.endpoint, REQUESTER, true, async (r) => {
        await authenticate(r);
        await connected(r, async () => {});
      }),
    ),
  );

/** TDI bind+unbind cycles (tdispBindCycle) in one held session with the IDE keys going. */
const tdiBinds = () =>
  interleavedPeers("TDI bind+unbind cycles", (p, body) =>
    onConnection(p, (r) =>
      connected(r, async (s) => {
        const t = { r, s, functionId: APP_DEFAULTS.functionId };
        await tdispVersion(t);
        const lockFlags = (await tdispCapabilities(t)).lockInterfaceFlagsSupported;
        return body(() => tdispBindCycle(t, lockFlags));
      }),
    ),
  );

/** A program's run: exit code, stdout+stderr, wall time and its own CPU (user+system) in ms. */
interface TimedRun {
  code: number | null;
  output: string;
  wallMs: number;
  cpuMs: number;
}

/** GNU time (found on PATH), which writes a program's CPU seconds ("%U %S") to a file. */
const TIME = "time";
const readCpuMs = (file: string) =>
  readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .at(-1)!
    .split(" ")
    .reduce((ms, s) => ms + Number(s) * 1000, 0);

/** Runs `tool` of SPDM_EMU_BIN (its sample keys are relative to it) under GNU time. */
function runTimed(tool: string, args: string[], env: NodeJS.ProcessEnv, cpuFile: string): Promise<TimedRun> {
  return new Promise((done, fail) => {
    const start = performance.now();
    const child = spawn(TIME, ["-o", cpuFile, "-f", "%U %S", `./${tool}`, ...args], {
      cwd: SPDM_EMU_BIN,
      env,
    });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.once("error", fail);
    child.once("exit", (code) =>
      done({ code, output, wallMs: performance.now() - start, cpuMs: readCpuMs(cpuFile) }),
    );
  });
}

/**
 * tools/nodelay-shim.c compiled into `dir` with `cc`: LD_PRELOADed, it gives DMTF's programs
 * TCP_NODELAY without touching their code. Undefined when there is no C compiler.
 */
function nodelayShim(dir: string): string | undefined {
  const out = join(dir, "nodelay.so");
  const src = join(packageRoot(), "tools", "nodelay-shim.c");
  const cc = spawnSync("cc", ["-shared", "-fPIC", "-O2", "-o", out, src, "-ldl"], { encoding: "utf8" });
  if (cc.error) return undefined;
  if (cc.status !== 0) throw new Error(`cc ${src}: ${cc.stderr}`);
  return out;
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Runs of each flow against each responder, interleaved. */
const FLOW_RUNS = Number(process.env.BENCH_RUNS ?? 5);

/** A responder side of one flow run: how the requester runs against it, and its CPU during the run. */
interface FlowSide {
  name: string;
  run(requesterArgs: string[]): Promise<TimedRun & { responderCpuMs: number }>;
}

/** A requester run that did not pass as the interop tests require it: an Error saying why. */
function checkRun(side: string, r: TimedRun): void {
  if (r.code !== 0 || /fail|error/i.test(r.output))
    throw new Error(`spdm_requester_emu against ${side}: exit ${r.code}\n${r.output.slice(-2000)}`);
}

/**
 * DMTF's spdm_requester_emu against our device (examples/dmtf-requester.json, DMTF's ecp384 chain
 * in slot 0, as the interop tests run it) and against spdm_responder_emu (RESPONDER_BASE_ARGS): a
 * session flow with TCP_NODELAY forced on DMTF's side, and its default authentication flow (no
 * session) unmodified against us and TCP_NODELAY on both DMTF programs. Both responders negotiate
 * the requester's defaults: SPDM 1.4, ECDSA P-384, SHA-384, secp384r1, AES-256-GCM. Median wall per
 * run, each side's CPU, and the rest (wire and idle); exchanges counted from one --pcap run each.
 */
async function dmtfRequesterFlows(): Promise<string[]> {
  if (!SPDM_EMU_BIN) return ["skipped: SPDM_EMU_BIN not set"];
  if (spawnSync(TIME, ["-f", "%U", "true"]).status !== 0) return ["skipped: no GNU time on PATH"];
  const tmp = mkdtempSync(join(tmpdir(), "doe-emu-bench-dmtf-"));
  const shim = nodelayShim(tmp);
  if (!shim) {
    rmSync(tmp, { recursive: true, force: true });
    return ["skipped: no C compiler"];
  }
  const plain = process.env;
  const nodelay = { ...process.env, LD_PRELOAD: shim };
  const dev = await spawnDevice({ args: [...teeDeviceArgs(), "--on-shutdown", "close"] });
  const port = String(dev.mailboxes[0]!.endpoint.port);
  const ours = (env: NodeJS.ProcessEnv, name: string): FlowSide => ({
    name,
    async run(args) {
      const before = processCpuMs(dev.pid);
      const r = await runTimed(
        "spdm_requester_emu",
        ["--trans", "PCI_DOE", "--port", port, ...args],
        env,
        join(tmp, "req"),
      );
      return { ...r, responderCpuMs: processCpuMs(dev.pid) - before };
    },
  });
  const theirs: FlowSide = {
    name: "spdm_responder_emu",
    async run(args) {
      const rspCpu = join(tmp, "rsp");
      const rsp = await startResponder([], RESPONDER_BASE_ARGS, SPDM_EMU_BIN, {
        env: nodelay,
        wrapper: [TIME, "-o", rspCpu, "-f", "%U %S"],
      });
      const r = await runTimed(
        "spdm_requester_emu",
        ["--trans", "PCI_DOE", "--port", String(rsp.port), ...args],
        nodelay,
        join(tmp, "req"),
      );
      await stopResponders();
      // Its own start-up (before the requester connects) is in this too: a few ms.
      return { ...r, responderCpuMs: readCpuMs(rspCpu) };
    },
  };
  const flows: { what: string; args: string[]; sides: FlowSide[]; goal: string }[] = [
    {
      what: "session flow (--exe_session KEY_EX,PSK,KEY_UPDATE,HEARTBEAT,MEAS,DIGEST,CERT), TCP_NODELAY on DMTF's side",
      args: ["--exe_session", "KEY_EX,PSK,KEY_UPDATE,HEARTBEAT,MEAS,DIGEST,CERT"],
      sides: [ours(nodelay, "doe-emu device"), theirs],
      goal: "<= 0.2",
    },
    {
      what: "authentication flow (default --exe_conn, no session): requester unmodified against us, TCP_NODELAY on both DMTF programs",
      args: ["--exe_session", ""],
      // The third side says what DMTF's Nagle still costs us with quick ACKs (src/net/quickack.ts).
      sides: [ours(plain, "doe-emu device"), theirs, ours(nodelay, "doe-emu device, TCP_NODELAY requester")],
      goal: "<= 0.3",
    },
  ];
  const lines: string[] = [];
  try {
    for (const { what, args, sides, goal } of flows) {
      const exchanges: number[] = [];
      for (const side of sides) {
        const pcap = join(tmp, "flow.pcap");
        const r = await side.run([...args, "--pcap", pcap]);
        checkRun(side.name, r);
        exchanges.push(decodePcap(readFileSync(pcap)).records.length / 2);
      }
      const runs = sides.map(() => [] as (TimedRun & { responderCpuMs: number })[]);
      for (let i = 0; i < FLOW_RUNS; i++)
        for (const [s, side] of sides.entries()) {
          const r = await side.run(args);
          checkRun(side.name, r);
          runs[s]!.push(r);
        }
      const walls = runs.map((rs) => median(rs.map((r) => r.wallMs)));
      lines.push(`${what}: median of ${FLOW_RUNS} runs`);
      for (const [s, side] of sides.entries()) {
        const req = median(runs[s]!.map((r) => r.cpuMs));
        const rsp = median(runs[s]!.map((r) => r.responderCpuMs));
        lines.push(
          `  -> ${side.name}: ${walls[s]!.toFixed(0)} ms wall; ${exchanges[s]} exchanges; requester CPU ${req.toFixed(0)} ms, ` +
            `responder CPU ${rsp.toFixed(0)} ms (${((rsp / exchanges[s]!) * 1000).toFixed(0)} us/exchange), ` +
            `wire and idle ${Math.max(0, walls[s]! - req - rsp).toFixed(0)} ms`,
        );
      }
      lines.push(`  ratio doe-emu/DMTF: ${(walls[0]! / walls[1]!).toFixed(2)} (goal ${goal})`);
    }
    return lines;
  } finally {
    await stopResponders();
    await dev.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** `mib` MiB of `frame` over and over, as one buffer per MiB. */
function floodChunks(frame: Buffer, mib: number): Buffer[] {
  const chunk = Buffer.concat(Array.from({ length: Math.ceil((1 << 20) / frame.length) }, () => frame));
  return Array.from({ length: mib }, () => chunk);
}

/**
 * Writes `chunks` to `port` without ever reading, as fast as the peer takes them; stops when all
 * are sent or the peer has taken nothing for `stallMs` (it stopped reading). Resolves with the
 * bytes the socket handed to the kernel, the socket left open.
 */
async function floodUnread(
  port: number,
  chunks: Buffer[],
  stallMs: number,
): Promise<{ sent: number; socket: net.Socket }> {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => undefined);
  await new Promise((r) => socket.once("connect", r));
  socket.pause();
  for (const c of chunks) {
    if (socket.write(c)) continue;
    const drained = await Promise.race([
      new Promise((r) => socket.once("drain", () => r(true))),
      sleep(stallMs, false),
    ]);
    if (!drained) break;
  }
  return { sent: socket.bytesWritten - socket.writableLength, socket };
}

/** Samples the API's GET latency until `until` resolves; resolves with the largest. */
async function apiLatencyDuring(
  api: Endpoint,
  until: Promise<unknown>,
): Promise<{ maxMs: number; n: number }> {
  let done = false;
  void until.finally(() => (done = true));
  let maxMs = 0;
  let n = 0;
  while (!done) {
    const start = performance.now();
    const rsp = await apiRequest(api, "GET", "/v1/topology");
    if (rsp.status !== 200) throw new Error(`GET /v1/topology answered ${rsp.status}`);
    maxMs = Math.max(maxMs, performance.now() - start);
    n++;
    await sleep(20);
  }
  return { maxMs, n };
}

const FLOOD_BOUNCER_MIB = 10;
const FLOOD_DEVICE_MIB = 200;

/**
 * A client floods a TDEV's bouncer with 10 MiB of NORMAL frames (DOE discovery requests) and never
 * reads; then closes, or keeps the connection open. The API's latency meanwhile, and whether the
 * host dropped its healthy device (it must not).
 */
async function floodBouncer(): Promise<string[]> {
  const t = await startTopology(
    { devices: [{ name: "healthy", bus: 1, description: {} }] },
    { probeIntervalMs: 200, unreachableTimeoutMs: 3000 },
  );
  const removed: string[] = [];
  const watch = await watchEvents(t.api, ({ event: e }) => {
    if (e.event === "device-removed") removed.push(e.device);
  });
  try {
    const frame = encodeFrame({
      command: SocketCommand.NORMAL,
      transport: TransportType.PCI_DOE,
      payload: encodeDoeObject(discoveryRequest(0)),
    });
    const lines: string[] = [];
    for (const ending of ["then closes", "keeps it open"] as const) {
      const before = processUsage(t.host.pid).rssMiB;
      let peak = before;
      const sampler = setInterval(() => (peak = Math.max(peak, processUsage(t.host.pid).rssMiB)), 50);
      const flood = (async () => {
        const { sent, socket } = await floodUnread(
          t.tdevs[0]!.bounce.port,
          floodChunks(frame, FLOOD_BOUNCER_MIB),
          1000,
        );
        if (ending === "then closes") socket.end();
        // The host's probes run meanwhile: a few of them must pass without it dropping the device.
        await sleep(2000);
        socket.destroy();
        return sent;
      })();
      const [latency, sent] = await Promise.all([apiLatencyDuring(t.api, flood), flood]);
      clearInterval(sampler);
      await sleep(500);
      const view = await t.topology();
      const healthy = view.devices.length === 1 && removed.length === 0;
      lines.push(
        `bouncer flood, ${FLOOD_BOUNCER_MIB} MiB of NORMAL frames unread, ${ending}: ${(sent / 2 ** 20).toFixed(1)} MiB taken; ` +
          `GET /v1/topology max ${latency.maxMs.toFixed(0)} ms over ${latency.n} (goal < 1000 ms); ` +
          `healthy device ${healthy ? "kept" : "DROPPED"}; host RSS ${before.toFixed(1)} -> peak ${peak.toFixed(1)} -> ${processUsage(t.host.pid).rssMiB.toFixed(1)} MiB`,
      );
    }
    return lines;
  } finally {
    watch.close();
    await t.stop();
  }
}

/** A client sends 200 MiB of TEST frames to a device's mailbox and never reads: the device's RSS. */
async function floodDevice(): Promise<string[]> {
  const dev = await spawnDevice();
  try {
    const before = processUsage(dev.pid).rssMiB;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, processUsage(dev.pid).rssMiB)), 50);
    const frame = encodeFrame({
      command: SocketCommand.TEST,
      transport: TransportType.PCI_DOE,
      payload: TEST_CLIENT_HELLO,
    });
    const { sent, socket } = await floodUnread(
      dev.mailboxes[0]!.endpoint.port,
      floodChunks(frame, FLOOD_DEVICE_MIB),
      2000,
    );
    clearInterval(sampler);
    socket.destroy();
    await sleep(1000);
    const after = processUsage(dev.pid).rssMiB;
    return [
      `device mailbox flood, ${FLOOD_DEVICE_MIB} MiB of TEST frames unread: ${(sent / 2 ** 20).toFixed(1)} MiB taken before the device stopped reading`,
      `device RSS ${before.toFixed(1)} -> peak ${peak.toFixed(1)} -> ${after.toFixed(1)} MiB after the client left (goal: moves < 100 MB)`,
    ];
  } finally {
    await dev.stop();
  }
}

const benches: [string, () => Promise<string[]>][] = [
  ["DOE transport", discoveryVsRaw],
  ["Capture overhead", captureOnVsOff],
  ["Device process start-up", deviceStartup],
  ["Topology launch", launchMany],
  [`Topology launch: ${MANY_DEVICES} devices`, launchManyMore],
  ["Topology: startTopology(examples/topology.json)", exampleTopology],
  ["Bouncer overhead", bounceVsDirect],
  ["SPDM authentication", authFlows],
  ["SPDM sessions", sessions],
  ["Secured vs plain round trips", securedVsPlain],
  ["TEE-IO: TDEV connects", tdevConnects],
  ["TEE-IO: TDI bind+unbind", tdiBinds],
  ["DMTF requester flows", dmtfRequesterFlows],
  ["Flood: bouncer", floodBouncer],
  ["Flood: device mailbox", floodDevice],
];

/** BENCH_ONLY=word runs the benchmarks whose name contains it. */
const only = process.env.BENCH_ONLY?.toLowerCase();

console.log(`doe-emu benchmarks (${SECONDS} s each; BENCH_SECONDS to change)\n`);
for (const [name, bench] of benches.filter(([n]) => !only || n.toLowerCase().includes(only))) {
  console.log(`== ${name}`);
  for (const line of await bench()) console.log(`  ${line}`);
}
