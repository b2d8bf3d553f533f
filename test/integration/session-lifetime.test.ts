/**
 * Session lifetime on a device in this process, over real sockets: sessions belong to the
 * function's SPDM peers. A session opened through the config-space DOE registers (over a control
 * connection) survives socket peers coming and going, and ends when its control connection closes.
 */
import { describe, expect, it } from "vitest";
import type { DoeObject } from "../../protocol/doe.js";
import { parseDescription } from "../../src/device/description.js";
import { startDevice } from "../../src/device/device.js";
import { DoeClient } from "../../src/doe/client.js";
import { ControlClient, DoeRegisterClient } from "../../src/host/control-client.js";
import { authenticate } from "../../src/requester/connection.js";
import { CMA, SECURED_CMA } from "../../src/requester/run.js";
import { SpdmRequester } from "../../src/spdm/requester.js";
import { heartbeat, openSession } from "../../src/spdm/requester-session.js";
import { logLines } from "../support/log-lines.js";

describe("session lifetime", () => {
  it("a session opened through the DOE registers outlives socket peers and ends with its control connection", async () => {
    // The device's log lines are the events the test waits for.
    const { log, next } = logLines("info");
    const device = await startDevice({ description: parseDescription({}), port: 0, log });
    const { rid, doeCapOffset } = device.model.identity().mailboxes[0]!;
    const control = await ControlClient.connect(device.control);
    // Generous timeouts: the device generates its certificate chain during NEGOTIATE_ALGORITHMS.
    const registers = new DoeRegisterClient(control, rid, doeCapOffset, { timeoutMs: 10_000 });
    // The requester's transport can be switched between the registers and a socket peer.
    let via: (o: DoeObject) => Promise<DoeObject> = (o) => registers.exchange(o);
    const requester = new SpdmRequester(
      {
        send: async (payload) => (await via({ ...CMA, payload })).payload,
        sendSecured: async (payload) => (await via({ ...SECURED_CMA, payload })).payload,
      },
      {},
    );
    const sockets: DoeClient[] = [];
    try {
      await authenticate(requester);
      const { session } = await openSession(requester, { kind: "KEY_EX" });

      // A socket peer speaks SPDM in the session, then leaves (CONTINUE: the device closes it).
      const peer = await DoeClient.connect(device.mailboxes[0]!.endpoint, { timeoutMs: 10_000 });
      sockets.push(peer);
      via = (o) => peer.exchange(o);
      await heartbeat(requester, session);
      const disconnected = next("disconnected");
      await peer.end("CONTINUE");
      await disconnected;

      // The registers' peer is still there, and so is its session.
      via = (o) => registers.exchange(o);
      await heartbeat(requester, session);

      // The control connection that opened it goes: the function has no SPDM peer left.
      const ended = next("session ended");
      control.close();
      expect((await ended)["reason"]).toBe("the function's last SPDM peer left");
      const late = await DoeClient.connect(device.mailboxes[0]!.endpoint);
      sockets.push(late);
      via = (o) => late.exchange(o);
      await expect(heartbeat(requester, session)).rejects.toThrow();
    } finally {
      for (const s of sockets) s.close();
      control.close();
      await device.stop();
    }
  });
});
