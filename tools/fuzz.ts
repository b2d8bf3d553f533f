/**
 * `npm run fuzz -- --seconds N [--seed S] [--target mailbox,control,bouncer,api,secured,spdm|all]
 * [--timeout MS] [--workers W]`: drives generated and mutated inputs (fuzz-inputs.ts) from several
 * concurrent connections against a real topology (a device process and the host, loopback) and
 * checks, per input, an answer or a clean close within the timeout; every second, that every process
 * is alive and that a fresh connection is still served (DOE discovery + GET_VERSION on the mailbox
 * and through the bouncer, GET /v1/topology); at the end, that RSS and open fds stayed bounded. A
 * failure prints the seed, the target and the input in hex, and exits 1.
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import fc from "fast-check";
import { DoeType, PCI_SIG_VENDOR_ID } from "../protocol/doe.js";
import { parseRoutingId } from "../protocol/pci.js";
import { BaseAsymAlgo, SpdmRequestCode } from "../protocol/spdm/codes.js";
import { DoeClient } from "../src/doe/client.js";
import { processUsage } from "../src/fixture/process-usage.js";
import { packageRoot } from "../src/fixture/spawn-device.js";
import { type RunningTopology, startTopology } from "../src/fixture/topology.js";
import type { LogLevel } from "../src/log.js";
import { type Endpoint, parseEndpoint, TimeoutError } from "../src/net/framed.js";
import { runApp } from "../src/requester/app.js";
import { authenticate } from "../src/requester/connection.js";
import { cmaTransport, connectRequester, SECURED_CMA, withRequester } from "../src/requester/run.js";
import { SpdmRequester } from "../src/spdm/requester.js";
import { getDigests } from "../src/spdm/requester-certificates.js";
import { endSession, heartbeat, keyUpdate, openSession } from "../src/spdm/requester-session.js";
import type { SecureSession } from "../src/spdm/session.js";
import {
  type Corpus,
  cmaFrame,
  controlStream,
  type Expected,
  expectedAnswers,
  httpRequest,
  innerMessage,
  mailboxStream,
  mutated,
  type StreamInput,
  spdmStream,
  type Wire,
} from "./fuzz-inputs.js";

const TARGETS = ["mailbox", "control", "bouncer", "api", "secured", "spdm"] as const;
type Target = (typeof TARGETS)[number];

function parseArgs(argv: string[]) {
  const o = {
    seconds: 10,
    seed: Date.now() % 2 ** 31,
    targets: [...TARGETS] as Target[],
    timeoutMs: 2000,
    workers: 2,
    logLevel: "error" as LogLevel,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i]!, argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    i++;
    if (flag === "--seconds") o.seconds = Number(value);
    else if (flag === "--seed") o.seed = Number(value);
    else if (flag === "--timeout") o.timeoutMs = Number(value);
    else if (flag === "--workers") o.workers = Number(value);
    else if (flag === "--log-level") o.logLevel = value as LogLevel;
    else if (flag === "--target") {
      const names = value.split(",");
      if (names.includes("all")) continue;
      const bad = names.filter((n) => !(TARGETS as readonly string[]).includes(n));
      if (bad.length) throw new Error(`unknown target ${bad.join(", ")}: use ${TARGETS.join(",")},all`);
      o.targets = names as Target[];
    } else throw new Error(`unknown flag ${flag}`);
  }
  for (const [k, v] of Object.entries(o))
    if (typeof v === "number" && !(Number.isInteger(v) && v >= 0))
      throw new Error(`--${k} must be a whole number`);
  return o;
}

const opts = parseArgs(process.argv.slice(2));

/** A failure of the oracle: what happened, and the input (hex) that caused it when there is one. */
class FuzzFailure extends Error {
  constructor(
    readonly target: string,
    message: string,
    readonly input?: string,
  ) {
    super(message);
  }
}

// ---- a raw connection that counts the frames (or bytes) it receives -------------------------------

class RawConn {
  frames = 0;
  bytes = 0;
  closed = false;
  private pending = Buffer.alloc(0);
  private wake: (() => void) | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on("data", (d) => {
      this.bytes += d.length;
      this.pending = this.pending.length ? Buffer.concat([this.pending, d]) : d;
      while (this.pending.length >= 12 && this.pending.length >= 12 + this.pending.readUInt32BE(8)) {
        this.pending = this.pending.subarray(12 + this.pending.readUInt32BE(8));
        this.frames++;
      }
      this.wake?.();
    });
    socket.on("error", () => undefined);
    socket.once("close", () => {
      this.closed = true;
      this.wake?.();
    });
  }

  static connect(e: Endpoint, timeoutMs: number): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: e.host, port: e.port });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`connecting to ${e.host}:${e.port} timed out`));
      }, timeoutMs);
      s.once("error", (err) => {
        clearTimeout(t);
        reject(err);
      });
      s.once("connect", () => {
        clearTimeout(t);
        resolve(new RawConn(s));
      });
    });
  }

  /** Writes `input`, one write per piece between its split points, yielding in between. */
  async send(input: StreamInput): Promise<void> {
    let from = 0;
    for (const at of [...input.splits, input.bytes.length]) {
      if (at <= from) continue;
      this.socket.write(input.bytes.subarray(from, at));
      from = at;
      if (at < input.bytes.length) await new Promise((r) => setImmediate(r));
    }
  }

  /** Resolves true once `done()` holds, false at the timeout. */
  until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve(false);
      }, timeoutMs);
      this.wake = () => {
        if (!done()) return;
        clearTimeout(t);
        this.wake = undefined;
        resolve(true);
      };
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

// ---- targets ----------------------------------------------------------------------------------------

/** A fuzz target: `run` sends one input and throws FuzzFailure when the oracle does not hold. */
interface Worker {
  next(): StreamInput | Buffer | SecuredInput;
  run(input: StreamInput | Buffer | SecuredInput): Promise<void>;
  close(): void;
}

const hexOf = (input: StreamInput | Buffer | SecuredInput): string =>
  Buffer.isBuffer(input)
    ? input.toString("hex")
    : "splits" in input
      ? `${input.bytes.toString("hex")}${input.splits.length ? ` (TCP writes split at ${input.splits.join(",")})` : ""}`
      : `${input.kind} ${input.bytes.toString("hex")}`;

/** Values of `arb` drawn in small batches (a batch blocks every worker while drawn), each batch from a seed derived from the run's, the target's and the worker's. */
function drawer<T>(arb: fc.Arbitrary<T>, target: Target, worker: number): () => T {
  let batch: T[] = [];
  let n = 0;
  const base = opts.seed * 7919 + TARGETS.indexOf(target) * 104_729 + worker * 1_299_709;
  return () => {
    if (batch.length === 0) batch = fc.sample(arb, { seed: (base + n++) | 0, numRuns: 25 }).reverse();
    return batch.pop()!;
  };
}

/**
 * A byte-stream target (mailbox, bouncer, spdm, control): one connection kept while the endpoint
 * keeps it; each input must get the answers the wire's rules call for, or a close, in time. After a
 * stream ending inside a frame we half-close, and the endpoint must then close.
 */
function streamWorker(
  target: Target,
  endpoint: Endpoint,
  wire: Wire,
  draw: () => StreamInput,
  /** Sent (answers awaited, not judged) on each new connection, e.g. VCA so later requests go deeper. */
  prelude: Buffer[] = [],
): Worker {
  let conn: RawConn | undefined;
  return {
    next: draw,
    async run(raw) {
      const input = raw as StreamInput;
      if (!conn || conn.closed) {
        conn = await RawConn.connect(endpoint, opts.timeoutMs);
        for (const p of prelude) {
          const want = conn.frames + 1;
          conn.socket.write(p);
          await conn.until(() => conn!.frames >= want || conn!.closed, opts.timeoutMs);
        }
      }
      const c = conn;
      const expected: Expected = expectedAnswers(input.bytes, wire);
      const want = c.frames + expected.answers;
      await c.send(input);
      if (!(await c.until(() => c.frames >= want || c.closed, opts.timeoutMs)))
        throw new FuzzFailure(
          target,
          `${want - c.frames} of ${expected.answers} answers missing after ${opts.timeoutMs} ms`,
        );
      if (expected.partial && !c.closed) c.socket.end();
      if ((expected.closes || expected.partial) && !(await c.until(() => c.closed, opts.timeoutMs)))
        throw new FuzzFailure(
          target,
          `not closed within ${opts.timeoutMs} ms after ${expected.partial ? "our half-close inside a frame" : "an input that ends the connection"}`,
        );
    },
    close: () => conn?.close(),
  };
}

/** One HTTP request per connection, half-closed after it: the API must answer or close in time. */
function apiWorker(endpoint: Endpoint, draw: () => StreamInput): Worker {
  let conn: RawConn | undefined;
  return {
    next: draw,
    async run(raw) {
      const input = raw as StreamInput;
      const c = await RawConn.connect(endpoint, opts.timeoutMs);
      conn = c;
      await c.send(input);
      c.socket.end();
      if (!(await c.until(() => c.bytes > 0 || c.closed, opts.timeoutMs)))
        throw new FuzzFailure("api", `no answer and no close within ${opts.timeoutMs} ms`);
      c.close();
    },
    close: () => conn?.close(),
  };
}

/** Inside a real session: a message sealed with the session's keys, or a sealed record then mutated. */
interface SecuredInput {
  kind: "inner" | "record";
  bytes: Buffer;
}

const SESSION_ENDING: readonly number[] = [SpdmRequestCode.END_SESSION, SpdmRequestCode.KEY_UPDATE];

/** Opens a KEY_EX session on a new connection, as the host would. */
async function openFuzzSession(endpoint: Endpoint): Promise<{ doe: DoeClient; session: SecureSession }> {
  const ropts = {
    exeMode: "CONTINUE" as const,
    timeoutMs: opts.timeoutMs,
    connectionSteps: ["DIGEST", "CERT"] as const,
  };
  const { requester, doe } = await connectRequester(endpoint, ropts, true);
  try {
    await authenticate(requester);
    const { session } = await openSession(requester, { kind: "KEY_EX" });
    return { doe, session };
  } catch (e) {
    doe.close();
    throw e;
  }
}

/**
 * The secured target: inner messages go sealed under the session's keys; a mutated record, an
 * END_SESSION or KEY_UPDATE inside, or an answer that does not open ends our side of the session,
 * and the next input runs in a new one.
 */
function securedWorker(endpoint: Endpoint, corpus: Corpus, worker: number): Worker {
  let s: { doe: DoeClient; session: SecureSession } | undefined;
  const draw = drawer(
    fc.oneof(
      { weight: 5, arbitrary: innerMessage(corpus).map((bytes): SecuredInput => ({ kind: "inner", bytes })) },
      {
        weight: 1,
        arbitrary: mutated(fc.constantFrom(...corpus.inner)).map(
          (bytes): SecuredInput => ({ kind: "record", bytes }),
        ),
      },
    ),
    "secured",
    worker,
  );
  const reset = () => {
    s?.doe.close();
    s = undefined;
  };
  return {
    next: draw,
    async run(raw) {
      const input = raw as SecuredInput;
      if (!s) {
        try {
          s = await openFuzzSession(endpoint);
        } catch (e) {
          throw new FuzzFailure("secured", `a new session could not be opened: ${(e as Error).message}`);
        }
      }
      // A record input: a valid message sealed (keys and sequence number right), the record then mutated.
      let record: Buffer;
      if (input.kind === "inner") record = s.session.seal(input.bytes);
      else {
        const valid = s.session.seal(corpus.inner[input.bytes.length % corpus.inner.length]!);
        record = mutateRecord(valid, input.bytes);
      }
      let keep = input.kind === "inner" && !SESSION_ENDING.includes(input.bytes[1] ?? 0);
      try {
        const rsp = await s.doe.exchange({ ...SECURED_CMA, payload: record });
        if (keep) s.session.open(rsp.payload);
      } catch (e) {
        if (e instanceof TimeoutError)
          throw new FuzzFailure("secured", `no answer within ${opts.timeoutMs} ms`, record.toString("hex"));
        // A clean close, an empty answer or one that does not open under our keys: an answer all the same.
        keep = false;
      }
      if (!keep) reset();
    },
    close: reset,
  };
}

/** A record with bytes of a mutated message laid over it: flips in header, ciphertext and tag alike. */
function mutateRecord(record: Buffer, noise: Buffer): Buffer {
  const out = Buffer.from(record);
  if (noise.length === 0) return out.subarray(0, out.length - 1);
  const at = noise[0]! % out.length;
  for (let i = 0; i < Math.min(noise.length, 4); i++) out[(at + i * 7) % out.length]! ^= noise[i]! || 1;
  return noise.length % 5 === 0 ? out.subarray(0, noise[1] ?? 0) : out;
}

// ---- corpus -----------------------------------------------------------------------------------------

/**
 * Valid messages from a real requester run against the device: VCA, certificates, CHALLENGE,
 * measurements in the clear; in a session, IDE-KM, TDISP and CXL IDE-KM (runApp), digests,
 * heartbeat, key update, END_SESSION.
 */
async function recordCorpus(endpoint: Endpoint): Promise<Corpus> {
  const corpus: Corpus = { plain: [], inner: [] };
  const doe = await DoeClient.connect(endpoint, { timeoutMs: 30_000 });
  const cma = cmaTransport(doe);
  const r = new SpdmRequester({
    send: (req) => {
      corpus.plain.push(Buffer.from(req));
      return cma.send(req);
    },
    sendSecured: (record) => cma.sendSecured!(record),
  });
  await authenticate(r);
  const { session } = await openSession(r, { kind: "KEY_EX" });
  const seal = session.seal.bind(session);
  session.seal = (m) => {
    corpus.inner.push(Buffer.from(m));
    return seal(m);
  };
  await runApp(r, session, { protocols: ["IDE_KM", "TDISP", "CXL_IDE_KM"] });
  await r.inSession(session, () => getDigests(r));
  await heartbeat(r, session);
  await keyUpdate(r, session, 1);
  await endSession(r, session, 0);
  await doe.end("CONTINUE");
  return corpus;
}

/**
 * Has each device generate the certificate chains of every algorithm it offers, before the clock
 * starts: generated on first use, they take long enough (seconds on a busy machine) to hold up the
 * function's mailbox, and every input queued behind it, past the timeout.
 */
async function warmUp(endpoints: Endpoint[], asym: readonly number[]): Promise<void> {
  const ropts = {
    exeMode: "CONTINUE" as const,
    timeoutMs: 60_000,
    connectionSteps: ["DIGEST", "CERT"] as const,
  };
  await Promise.all(
    endpoints.map(async (e) => {
      for (const baseAsymAlgo of asym)
        await withRequester(e, { ...ropts, baseAsymAlgo }, false, authenticate);
    }),
  );
}

// ---- process health -----------------------------------------------------------------------------

/** Growth allowed over the run: a leak per input would pass these within the first thousands. */
const MAX_RSS_GROWTH_MIB = 100;
const MAX_FD_GROWTH = 16;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return /State:\s+[^Z]/.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/** The first device's TDEV's bouncer, once the topology is up. */
let bouncer: Endpoint;

/** A fresh connection is served: DOE discovery and GET_VERSION on the mailbox and through the bouncer; the API answers. */
async function canary(t: RunningTopology, processes: { name: string; pid: number }[]): Promise<void> {
  for (const p of processes)
    if (!alive(p.pid)) throw new FuzzFailure("canary", `${p.name} (pid ${p.pid}) is gone`);
  const round = async (where: string, e: Endpoint) => {
    let doe: DoeClient | undefined;
    try {
      doe = await DoeClient.connect(e, { timeoutMs: opts.timeoutMs });
      const rsp = await doe.exchange({
        vendorId: PCI_SIG_VENDOR_ID,
        type: DoeType.CMA_SPDM,
        payload: Buffer.from([0x10, 0x84, 0, 0]),
      });
      if (rsp.payload[1] !== 0x04)
        throw new Error(`GET_VERSION answered with code 0x${rsp.payload[1]?.toString(16)}`);
    } catch (e) {
      throw new FuzzFailure("canary", `${where}: ${(e as Error).message}`);
    } finally {
      doe?.close();
    }
  };
  const api = async () => {
    try {
      const rsp = await fetch(`${t.apiUrl}/v1/topology`, { signal: AbortSignal.timeout(opts.timeoutMs) });
      if (rsp.status !== 200) throw new Error(`status ${rsp.status}`);
      await rsp.json();
    } catch (e) {
      throw new FuzzFailure("canary", `GET /v1/topology: ${(e as Error).message}`);
    }
  };
  await Promise.all([
    round("mailbox", t.devices[0]!.mailboxes[0]!.endpoint),
    round("bouncer", bouncer),
    api(),
  ]);
}

// ---- main -------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<number> {
  console.log(
    `doe-emu fuzz: seed ${opts.seed}, ${opts.seconds} s, targets ${opts.targets.join(",")}, ${opts.workers} connections each, timeout ${opts.timeoutMs} ms`,
  );
  const dmtf = JSON.parse(readFileSync(join(packageRoot(), "examples", "dmtf-requester.json"), "utf8"));
  // ECDSA only, warmed up before the clock (warmUp): an RSA-4096 chain is generated on first use in
  // seconds (responder-slots.ts), which would stall the function's mailbox for every input of that moment.
  const spdm = { asym: ["ECDSA_P384", "ECDSA_P256", "ECDSA_P521"] };
  // The same device on bus 2, its TDISP FunctionID 0xBEEF naming its own function.
  const onBus2 = { ...dmtf, spdm, tdisp: { functionIdAliases: { "0xBEEF": "02:00.0" } } };
  // A SHUTDOWN among the inputs must end only its connection.
  const args = ["--on-shutdown", "close"];
  // SPDM state belongs to a function, as a device's security manager holds it: the secured target
  // has a device of its own, so the VCA the other targets send does not reset its handshakes.
  const t = await startTopology(
    {
      devices: [
        { name: "fuzz", bus: 2, description: onBus2, args },
        { name: "fuzz-secured", bus: 1, description: { ...dmtf, spdm }, args },
      ],
    },
    {
      logLevel: opts.logLevel,
      stderr: "inherit",
      // The bouncer answers (empty) when the mailbox has not within its timeout: within ours, then.
      bounceTimeoutMs: Math.floor(opts.timeoutMs / 2),
    },
  );
  const processes = [
    ...t.devices.map((d) => ({ name: d.name, pid: d.pid! })),
    { name: "host", pid: t.host.pid },
  ];
  const workers: Worker[] = [];
  try {
    const mailbox = t.devices[0]!.mailboxes[0]!.endpoint;
    const securedMailbox = t.devices[1]!.mailboxes[0]!.endpoint;
    await warmUp(
      [mailbox, securedMailbox],
      [BaseAsymAlgo.ECDSA_P256, BaseAsymAlgo.ECDSA_P384, BaseAsymAlgo.ECDSA_P521],
    );
    const corpus = await recordCorpus(securedMailbox);
    const view = await t.topology();
    // The API and control inputs name the first device's functions: an authenticate the host ran on
    // the secured target's function would reset that target's handshakes.
    const fuzzed = view.devices.filter((d) => d.name === "fuzz");
    const functionBdfs = fuzzed.flatMap((d) => d.functions.map((f) => f.bdf));
    // The host numbers buses its own way; the control wire takes the device's routing IDs.
    const rids = [parseRoutingId("02:00.0")!];
    const tdis = view.tdis.filter((x) => functionBdfs.includes(x.tdev)).map((x) => x.bdf);
    const bdfs = [...new Set([...tdis, ...functionBdfs])];
    const devices = fuzzed.map((d) => d.id);
    // The bouncer of the first device's TDEV (the secured target's device is left alone).
    bouncer = parseEndpoint(view.tdevs.find((x) => functionBdfs.includes(x.bdf))!.bounce);
    const make = (target: Target, w: number): Worker => {
      switch (target) {
        case "mailbox":
          return streamWorker(target, mailbox, "mailbox", drawer(mailboxStream(corpus), target, w));
        case "bouncer":
          return streamWorker(target, bouncer, "bouncer", drawer(mailboxStream(corpus), target, w));
        case "spdm":
          return streamWorker(
            target,
            mailbox,
            "mailbox",
            drawer(spdmStream(corpus), target, w),
            corpus.plain.slice(0, 3).map(cmaFrame),
          );
        case "control":
          return streamWorker(
            target,
            t.devices[0]!.control,
            "control",
            drawer(controlStream(rids), target, w),
          );
        case "api":
          return apiWorker(t.api, drawer(httpRequest(bdfs, devices), target, w));
        case "secured":
          return securedWorker(securedMailbox, corpus, w);
      }
    };
    const counts = new Map<Target, number>(opts.targets.map((x) => [x, 0]));
    await sleep(200);
    const before = processes.map((p) => processUsage(p.pid));
    for (const [i, p] of processes.entries())
      console.log(
        `start: ${p.name} pid ${p.pid}: RSS ${before[i]!.rssMiB.toFixed(1)} MiB, ${before[i]!.fds} fds`,
      );

    const start = performance.now();
    const end = start + opts.seconds * 1000;
    let failure: FuzzFailure | undefined;
    const loops = opts.targets.flatMap((target) =>
      // One session at a time: two would reset each other's handshakes on the one function.
      Array.from({ length: target === "secured" ? 1 : opts.workers }, async (_, w) => {
        const worker = make(target, w);
        workers.push(worker);
        while (!failure && performance.now() < end) {
          const input = worker.next();
          try {
            await worker.run(input);
          } catch (e) {
            const f = e instanceof FuzzFailure ? e : new FuzzFailure(target, (e as Error).stack ?? String(e));
            failure ??= new FuzzFailure(f.target, f.message, f.input ?? hexOf(input));
          }
          counts.set(target, counts.get(target)! + 1);
        }
      }),
    );
    const watch = (async () => {
      for (let tick = 1; !failure && performance.now() < end; tick++) {
        await sleep(1000);
        if (failure) break;
        // A long run says how far it is every minute or so.
        if (tick % 60 === 0) {
          const s = ((performance.now() - start) / 1000).toFixed(0);
          console.log(`${s} s: ${[...counts].map(([k, n]) => `${k} ${n}`).join(", ")}`);
        }
        await canary(t, processes).catch((e: FuzzFailure) => {
          failure ??= e;
        });
      }
    })();
    await Promise.all([...loops, watch]);
    const secs = (performance.now() - start) / 1000;
    for (const w of workers) w.close();

    let total = 0;
    for (const [target, n] of counts) {
      total += n;
      console.log(
        `${target.padEnd(8)} ${String(n).padStart(9)} inputs  ${(n / secs).toFixed(0).padStart(6)}/s`,
      );
    }
    console.log(
      `total    ${String(total).padStart(9)} inputs  ${(total / secs).toFixed(0).padStart(6)}/s in ${secs.toFixed(1)} s`,
    );

    if (!failure) {
      await canary(t, processes).catch((e: FuzzFailure) => {
        failure = e;
      });
    }
    // Let the processes see every close before counting what they hold.
    await sleep(1000);
    for (const [i, p] of processes.entries()) {
      if (!alive(p.pid)) {
        failure ??= new FuzzFailure("end", `${p.name} (pid ${p.pid}) is gone`);
        continue;
      }
      const a = processUsage(p.pid);
      const b = before[i]!;
      console.log(`end:   ${p.name} pid ${p.pid}: RSS ${a.rssMiB.toFixed(1)} MiB, ${a.fds} fds`);
      if (a.rssMiB - b.rssMiB > MAX_RSS_GROWTH_MIB)
        failure ??= new FuzzFailure(
          "end",
          `${p.name} RSS grew by ${(a.rssMiB - b.rssMiB).toFixed(1)} MiB (bound ${MAX_RSS_GROWTH_MIB})`,
        );
      if (a.fds - b.fds > MAX_FD_GROWTH)
        failure ??= new FuzzFailure(
          "end",
          `${p.name} holds ${a.fds - b.fds} more fds (bound ${MAX_FD_GROWTH})`,
        );
    }
    if (failure) {
      console.log(`FAIL [${failure.target}] seed ${opts.seed}: ${failure.message}`);
      if (failure.input) console.log(`input: ${failure.input}`);
      return 1;
    }
    console.log(`ok: 0 failures (seed ${opts.seed})`);
    return 0;
  } finally {
    for (const w of workers) w.close();
    await t.stop();
  }
}

process.exitCode = await main();
