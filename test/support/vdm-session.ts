/** A KEY_EX session to an in-process device, in which a test sends vendor-defined messages of one protocol. */
import { decodePciSigVdm, encodePciSigVdm, type PciSigProtocol } from "../../protocol/pcisig-vdm.js";
import type { SpdmMessage } from "../../protocol/spdm/index.js";
import type { RunningDevice } from "../../src/device/device.js";
import { authenticate } from "../../src/requester/connection.js";
import { withRequester } from "../../src/requester/run.js";
import { openSession } from "../../src/spdm/requester-session.js";

export interface VdmSession {
  /** `message` of the protocol in the session; the SPDM answer, whatever it is. */
  send(message: Buffer): Promise<SpdmMessage>;
  /** `message` in the session; the protocol message of the VENDOR_DEFINED_RESPONSE, which must be of the same protocol. */
  ask(message: Buffer): Promise<Buffer>;
}

export async function withVdmSession(
  device: RunningDevice,
  protocol: PciSigProtocol,
  body: (s: VdmSession) => Promise<void>,
): Promise<void> {
  // Generous: the device generates its certificate chain on the first NEGOTIATE_ALGORITHMS.
  const opts = { exeMode: "CONTINUE" as const, timeoutMs: 30_000 };
  await withRequester(device.mailboxes[0]!.endpoint, opts, true, async (r) => {
    await authenticate(r);
    const { session } = await openSession(r, { kind: "KEY_EX" });
    const send = async (message: Buffer) => {
      const reply = await r.inSession(session, () =>
        r.exchange({
          code: "VENDOR_DEFINED_REQUEST",
          version: r.connection.version,
          ...encodePciSigVdm({ protocol, message }),
        }),
      );
      return reply.message;
    };
    const ask = async (message: Buffer) => {
      const rsp = await send(message);
      if (rsp.code !== "VENDOR_DEFINED_RESPONSE") throw new Error(`got ${rsp.code}`);
      const vdm = decodePciSigVdm(rsp);
      if (vdm.protocol !== protocol) throw new Error(`answered with ${vdm.protocol}`);
      return vdm.message;
    };
    await body({ send, ask });
  });
}
