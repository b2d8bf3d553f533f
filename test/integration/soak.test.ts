/**
 * A short soak (src/fixture/soak.ts: one warm-up cycle and three measured; `npm run soak` runs 100 cycles): device processes SIGKILLed
 * mid-request under load, one after the other, each replaced by a new one that announces itself.
 * The host removes each killed device within its timeout, answers the API throughout, drops no
 * device it should keep, and ends with its baseline fd count and RSS.
 */
import { describe, expect, it } from "vitest";
import { runSoak, soakProblems } from "../../src/fixture/soak.js";

describe("soak", () => {
  it("4 × SIGKILL of a device mid-request: removed each time, API answering, host back to its baseline", async () => {
    const r = await runSoak({ cycles: 3, warmUpCycles: 1, pool: 2, settleMs: 1000 });
    expect(soakProblems(r)).toEqual([]);
    // The announce connection closes with the process: removal does not wait for the probe.
    expect(r.removalMaxMs).toBeLessThan(3000);
    expect(r.roundTrips).toBeGreaterThan(0);
  }, 60_000);
});
