/** `--keylog`: the line format, and that the secret goes to the file and never to a log line. */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { keyLogLine, openKeyLog } from "../../src/spdm/keylog.js";
import { logLines } from "../support/log-lines.js";

describe("key log", () => {
  let dir = "";
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("formats DHE and PSK lines as spdm_dump's options take them", () => {
    expect(keyLogLine(0xffff0001, { dheSecret: Buffer.from("a1b2", "hex") })).toBe(
      "SPDM_SESSION ffff0001 DHE_SECRET a1b2",
    );
    expect(keyLogLine(0x12, { psk: Buffer.from("TestPskData\0") })).toBe(
      "SPDM_SESSION 00000012 PSK 5465737450736b4461746100",
    );
  });

  it("appends one line per session, warns loudly once, and logs no secret", () => {
    dir = mkdtempSync(join(tmpdir(), "keylog-"));
    const file = join(dir, "keys");
    const lines = logLines("trace");
    const keyLog = openKeyLog(file, lines.log);
    keyLog(1, { dheSecret: Buffer.alloc(48, 0xab) });
    keyLog(2, { psk: Buffer.alloc(12, 0xcd) });
    expect(readFileSync(file, "utf8").split("\n")).toEqual([
      `SPDM_SESSION 00000001 DHE_SECRET ${"ab".repeat(48)}`,
      `SPDM_SESSION 00000002 PSK ${"cd".repeat(12)}`,
      "",
    ]);
    expect(lines.written).toHaveLength(1);
    expect(JSON.parse(lines.written[0]!)).toMatchObject({
      level: 40,
      msg: expect.stringMatching(/KEY LOG ON/),
    });
    expect(lines.written.join("")).not.toMatch(/abab|cdcd/);
  });

  it("stops after a failed append, logging it once", () => {
    dir = mkdtempSync(join(tmpdir(), "keylog-"));
    const lines = logLines();
    const keyLog = openKeyLog(join(dir, "missing", "keys"), lines.log);
    keyLog(1, { psk: Buffer.alloc(4) });
    keyLog(2, { psk: Buffer.alloc(4) });
    expect(lines.written.filter((l) => l.includes("key logging stopped"))).toHaveLength(1);
  });
});
