/**
 * A function with CMA/SPDM on one mailbox and secured CMA/SPDM on another: the SPDM endpoint is the
 * function's, so a session opened through the first mailbox carries its records through the second.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { DoeClient } from "../../src/doe/client.js";
import { type SpawnedDevice, spawnDevice } from "../../src/fixture/spawn-device.js";
import { authenticate } from "../../src/requester/connection.js";
import { CMA, SECURED_CMA } from "../../src/requester/run.js";
import { runSession } from "../../src/requester/session.js";
import { SpdmRequester } from "../../src/spdm/requester.js";
import { descriptionFile } from "../support/description-file.js";

let device: SpawnedDevice;
beforeAll(async () => {
  const file = descriptionFile(
    {
      functions: [
        {
          mailboxes: [{ protocols: ["0001:00", "0001:01"] }, { port: 0, protocols: ["0001:00", "0001:02"] }],
        },
      ],
    },
    "split.json",
  );
  device = await spawnDevice({ args: ["--config", file] });
});
afterAll(() => device.stop());

it("opens a KEY_EX session on the CMA mailbox and runs it on the secured CMA mailbox", async () => {
  // A loaded machine may take longer than Linux's 1 s for the first signatures of a fresh process.
  const [cma, secured] = await Promise.all(
    device.mailboxes.map((m) => DoeClient.connect(m.endpoint, { timeoutMs: 10_000 })),
  );
  try {
    const r = new SpdmRequester(
      {
        send: async (req) => (await cma!.exchange({ ...CMA, payload: req })).payload,
        sendSecured: async (rec) => (await secured!.exchange({ ...SECURED_CMA, payload: rec })).payload,
      },
      { connectionSteps: ["DIGEST", "CERT"] },
    );
    await authenticate(r);
    const s = await runSession(r, { kind: "KEY_EX" });
    expect(s.skipped).toEqual([]);
    expect(s.steps).toContain("END_SESSION");
    expect(s.securedRoundTrips).toBeGreaterThan(5);
  } finally {
    cma!.close();
    secured!.close();
  }
});
