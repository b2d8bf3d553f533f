/**
 * Captures end to end: a device process with --pcap and --keylog serving our requester (which
 * captures and key-logs too), `doe-emu decode` on the files, secrets kept out of every log line, and
 * a device killed with SIGKILL mid-run leaving a file that decodes up to its last whole record.
 */
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodePcap } from "../../protocol/pcap.js";
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import { decodeRecords } from "../../src/cli/decode.js";
import { cliPath, type SpawnedDevice, spawnDevice } from "../../src/fixture/spawn-device.js";
import { PcapCapture } from "../../src/net/capture.js";
import { runRequester, runSessionRequester } from "../../src/requester/run.js";
import { openKeyLog, parseKeyLog } from "../../src/spdm/keylog.js";
import { DMTF_TEST_PSK } from "../../src/spdm/names.js";
import { logLines } from "../support/log-lines.js";

let dir: string;
let device: SpawnedDevice;
let deviceLog: number;
const timeoutMs = 30_000;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "capture-"));
  deviceLog = openSync(join(dir, "device.log"), "w");
  device = await spawnDevice({
    args: ["--pcap", join(dir, "dev"), "--keylog", join(dir, "device.keys"), "--log-level", "debug"],
    stderr: deviceLog,
  });
});
afterAll(async () => {
  await device.stop();
  closeSync(deviceLog);
  rmSync(dir, { recursive: true, force: true });
});

const pcaps = (sub: string) =>
  readdirSync(join(dir, sub))
    .sort()
    .map((name) => join(dir, sub, name));

describe("device --pcap --keylog serving our requester", () => {
  const requesterLog = logLines("trace");

  beforeAll(async () => {
    const endpoint = device.mailboxes[0]!.endpoint;
    const capture = new PcapCapture({ dir: join(dir, "req"), process: "requester", log: requesterLog.log });
    const keyLog = openKeyLog(join(dir, "requester.keys"), requesterLog.log);
    const common = { exeMode: "CONTINUE" as const, timeoutMs, capture, keyLog };
    await runSessionRequester(endpoint, {
      ...common,
      session: { kind: "KEY_EX" },
    });
    await runSessionRequester(endpoint, {
      ...common,
      connectionSteps: [],
      session: { kind: "PSK", psk: DMTF_TEST_PSK },
    });
  }, 60_000);

  it("writes one file per connection on each side, holding the same objects", () => {
    const [dev, req] = [pcaps("dev"), pcaps("req")];
    expect(dev.map((f) => f.replace(/.*device-\d+-/, ""))).toEqual([
      "01-00.0-mb0-c1.pcap",
      "01-00.0-mb0-c2.pcap",
    ]);
    expect(req).toHaveLength(2);
    dev.forEach((file, i) => {
      const ours = decodePcap(readFileSync(file)).records.map((r) => r.data.toString("hex"));
      expect(ours.length).toBeGreaterThan(10);
      expect(decodePcap(readFileSync(req[i]!)).records.map((r) => r.data.toString("hex"))).toEqual(ours);
    });
  });

  it("key-logs each session once on both sides, as it is established", () => {
    const device = readFileSync(join(dir, "device.keys"), "utf8");
    expect(readFileSync(join(dir, "requester.keys"), "utf8")).toBe(device);
    const entries = parseKeyLog(device);
    expect(entries.map((e) => Object.keys(e.input)[0])).toEqual(["dheSecret", "psk"]);
    expect(entries[1]!.input).toEqual({ psk: DMTF_TEST_PSK });
  });

  it("decodes every object of each file with the key log, decrypting every secured record", () => {
    const keys = parseKeyLog(readFileSync(join(dir, "device.keys"), "utf8"));
    const names: string[] = [];
    for (const file of pcaps("dev")) {
      const decoded = decodeRecords(decodePcap(readFileSync(file)).records, keys);
      expect(decoded.filter((d) => d.error).map((d) => `${d.index}: ${d.error}`)).toEqual([]);
      for (const d of decoded) if (d.spdm) expect(encodeSpdm(d.spdm.message)).toEqual(d.spdm.bytes);
      expect(decoded.filter((d) => d.secured).every((d) => d.secured!.decrypted)).toBe(true);
      names.push(...decoded.map((d) => d.spdm?.name ?? d.protocol));
    }
    for (const name of [
      "KEY_EXCHANGE_RSP",
      "PSK_FINISH_RSP",
      "KEY_UPDATE_ACK",
      "HEARTBEAT_ACK",
      "END_SESSION_ACK",
    ])
      expect(names).toContain(name);
  });

  it("`doe-emu decode --json` prints one object per DOE object", () => {
    const [file] = pcaps("dev");
    const out = execFileSync(
      process.execPath,
      [cliPath(), "decode", file!, "--keylog", join(dir, "device.keys"), "--json"],
      {
        encoding: "utf8",
      },
    );
    const lines = out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(decodePcap(readFileSync(file!)).records.length);
    expect(lines[0]).toMatchObject({ index: 1, direction: "request", protocol: "DOE_DISCOVERY" });
    expect(lines.filter((l) => l["error"])).toEqual([]);
    const text = execFileSync(process.execPath, [cliPath(), "decode", file!], { encoding: "utf8" });
    expect(text).toMatch(/SECURED\(session ffffffff\) ERROR: no DHE secret/);
  });

  it("never writes a secret to a log line, at any level", () => {
    const logs = readFileSync(join(dir, "device.log"), "utf8") + requesterLog.written.join("");
    expect(logs).toMatch(/KEY LOG ON/);
    expect(logs).toMatch(/"level":20/);
    for (const e of parseKeyLog(readFileSync(join(dir, "device.keys"), "utf8"))) {
      const secret = Buffer.from("psk" in e.input ? e.input.psk : e.input.dheSecret).toString("hex");
      expect(logs).not.toContain(secret);
    }
  });
});

it("a device killed with SIGKILL mid-run leaves a file that decodes up to its last whole record", async () => {
  const victim = await spawnDevice({ args: ["--pcap", join(dir, "killed")] });
  const running = (async () => {
    for (;;) await runRequester(victim.mailboxes[0]!.endpoint, { exeMode: "CONTINUE", timeoutMs });
  })().catch(() => "stopped");
  const [file] = await (async () => {
    for (;;) {
      const files = readdirSync(join(dir, "killed")).map((n) => join(dir, "killed", n));
      if (files.length > 0 && statSync(files[0]!).size > 4000) return files;
      await sleep(5);
    }
  })();
  victim.child.kill("SIGKILL");
  await victim.exited;
  expect(await running).toBe("stopped");
  const capture = decodePcap(readFileSync(file!));
  expect(capture.records.length).toBeGreaterThan(10);
  const decoded = decodeRecords(capture.records, []);
  expect(decoded.filter((d) => d.error)).toEqual([]);
}, 60_000);
