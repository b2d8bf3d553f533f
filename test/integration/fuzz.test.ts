/**
 * CI's slice of `npm run fuzz`: a few seconds of every target with a fixed seed against real
 * processes, which must end with no failure (every input answered or closed in time, every process
 * up, the canary served, RSS and fds bounded). The long run's figures are in the README.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { packageRoot } from "../../src/fixture/spawn-device.js";

it("fuzzes every target for a few seconds with 0 failures", async () => {
  const fuzz = join(packageRoot(), "dist", "tools", "fuzz.js");
  // A generous per-input timeout: CI shares its cores, and a stall there is not the device's.
  const args = [fuzz, "--seconds", "3", "--seed", "1", "--timeout", "3000"];
  const { stdout } = await promisify(execFile)(process.execPath, args, { timeout: 60_000 }).catch(
    (e: { stdout?: string; message: string }) => {
      throw new Error(`fuzz failed:\n${e.stdout ?? e.message}`);
    },
  );
  expect(stdout).toMatch(/^ok: 0 failures \(seed 1\)$/m);
  for (const target of ["mailbox", "control", "bouncer", "api", "secured", "spdm"])
    expect(stdout).toMatch(new RegExp(`^${target} +[1-9]\\d* inputs`, "m"));
}, 60_000);
