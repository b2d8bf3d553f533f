import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { cliPath } from "../../src/fixture/spawn-device.js";

const run = promisify(execFile);

it("`doe-emu demo` runs the example topology end to end and leaves nothing running", async () => {
  const { stdout } = await run(process.execPath, [cliPath(), "demo"], { timeout: 60_000 });
  expect(stdout).toContain("3 devices, 3 TDEVs, 6 TDIs");
  expect(stdout).toMatch(/01:00\.0: SPDM 1\.4; BaseHash SHA_384, BaseAsym ECDSA_P384/);
  expect(stdout).toContain("bind it to guest-2 (refused: bound to another VM): HTTP 409");
  expect(stdout).toMatch(/01:00\.0: connected, session 0x[0-9a-f]+, IDE stream secure/);
  expect(stdout).toMatch(/01:00\.0: TDISP RUN, bound to guest-3/);
  expect(stdout).toMatch(/setpci --api \S+ -s 01:00\.0 BASE_ADDRESS_0=\S+\n {2}01:00\.0: TDISP ERROR/);
  expect(stdout).toContain("re-bind while BAR 0 is elsewhere (the report does not verify): HTTP 502");
  expect(stdout).toContain("re-bind with BAR 0 back where the host assigned it: HTTP 200");
  expect(stdout).toContain("TDIs:  01:00.0 (guest-3, RUN), 01:00.1,");
  expect(stdout).toMatch(/01:00\.0: KEY_EX session 0x[0-9a-f]+, SECP_384_R1, AES_256_GCM/);
  expect(stdout).toContain(
    "3 devices, 3 TDEVs (2 authenticated with SPDM, 1 secure session through the bouncer), 6 TDIs",
  );
  const pids = [...stdout.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
  expect(pids).toHaveLength(4);
  for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
});
