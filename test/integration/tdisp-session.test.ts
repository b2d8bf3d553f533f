/**
 * TDISP through a real SPDM session over real sockets, on a device in this process: the requests go
 * as PCI-SIG VENDOR_DEFINED_REQUESTs in a KEY_EX session to function 0's mailbox, the whole
 * lock/report/start/stop cycle DMTF's requester runs; a BAR write while RUN (with `doe-emu setpci`)
 * puts the TDI in ERROR, as does one through the host's API (`setpci --api`) while it is locked,
 * and so does the end of the session it was locked in.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { Header } from "../../protocol/pci.js";
import { decodePciSigVdm, encodePciSigVdm } from "../../protocol/pcisig-vdm.js";
import type { VendorDefinedResponse } from "../../protocol/spdm/messages.js";
import {
  decodeDeviceInterfaceReport,
  decodeTdisp,
  encodeTdisp,
  TdiState,
  type TdispMessage,
  type TdispMessageOf,
} from "../../protocol/tdisp.js";
import { parseDescription } from "../../src/device/description.js";
import { startDevice } from "../../src/device/device.js";
import { DoeClient } from "../../src/doe/client.js";
import { cliPath } from "../../src/fixture/spawn-device.js";
import { startHost } from "../../src/host/host.js";
import { silentLogger } from "../../src/log.js";
import { formatEndpoint } from "../../src/net/framed.js";
import { authenticate } from "../../src/requester/connection.js";
import { CMA, SECURED_CMA } from "../../src/requester/run.js";
import { SpdmRequester } from "../../src/spdm/requester.js";
import { endSession, openSession } from "../../src/spdm/requester-session.js";
import { registryReaches } from "../support/host-events.js";
import type { TdispBody } from "../support/tdisp.js";

const exec = promisify(execFile);
const BEEF = 0xbeef;
const PF = 0x0100;

describe("TDISP over an SPDM session", () => {
  it("locks, reports, starts and stops a TDI; a BAR write while RUN and the session's end put it in ERROR", async () => {
    const description = parseDescription({
      functions: [
        { bars: [{ index: 0, size: "0x8000" }], msix: { tableSize: 4, table: { bar: 0, offset: 0x4000 } } },
      ],
      tdisp: { functionIdAliases: { "0xBEEF": "01:00.0" } },
    });
    const device = await startDevice({ description, port: 0, log: silentLogger });
    // Generous timeout: the device generates its certificate chain during NEGOTIATE_ALGORITHMS.
    const doe = await DoeClient.connect(device.mailboxes[0]!.endpoint, { timeoutMs: 10_000 });
    const r = new SpdmRequester(
      {
        send: async (payload) => (await doe.exchange({ ...CMA, payload })).payload,
        sendSecured: async (payload) => (await doe.exchange({ ...SECURED_CMA, payload })).payload,
      },
      {},
    );
    try {
      device.model.configWrite(PF, Header.BAR0, 4, 0x4000_0000);
      await authenticate(r);
      const { session } = await openSession(r, { kind: "KEY_EX" });
      const ask = async (m: TdispBody): Promise<TdispMessage> => {
        const request = encodeTdisp({ version: 0x10, functionId: BEEF, ...m } as TdispMessage);
        const reply = await r.inSession(session, () =>
          r.exchange({
            code: "VENDOR_DEFINED_REQUEST",
            version: r.version,
            ...encodePciSigVdm({ protocol: "TDISP", message: request }),
          }),
        );
        expect(reply.message.code).toBe("VENDOR_DEFINED_RESPONSE");
        const vdm = decodePciSigVdm(reply.message as VendorDefinedResponse);
        expect(vdm.protocol).toBe("TDISP");
        const answer = decodeTdisp(vdm.message);
        expect(answer.functionId).toBe(BEEF);
        return answer;
      };
      const state = async () =>
        ((await ask({ code: "GET_DEVICE_INTERFACE_STATE" })) as TdispMessageOf<"DEVICE_INTERFACE_STATE">)
          .tdiState;

      expect(await ask({ code: "GET_TDISP_VERSION" })).toMatchObject({
        code: "TDISP_VERSION",
        versions: [0x10],
      });
      const caps = (await ask({
        code: "GET_TDISP_CAPABILITIES",
        tsmCaps: 0,
      })) as TdispMessageOf<"TDISP_CAPABILITIES">;
      expect(await state()).toBe(TdiState.CONFIG_UNLOCKED);
      const locked = await ask({
        code: "LOCK_INTERFACE_REQUEST",
        flags: caps.lockInterfaceFlagsSupported,
        defaultStreamId: 0,
        mmioReportingOffset: 0xd000_0000n,
        bindP2pAddressMask: 0n,
      });
      const nonce = (locked as TdispMessageOf<"LOCK_INTERFACE_RESPONSE">).startInterfaceNonce;
      expect(await state()).toBe(TdiState.CONFIG_LOCKED);
      const parts: Buffer[] = [];
      for (let offset = 0, remainder = 1; remainder > 0; ) {
        const m = (await ask({
          code: "GET_DEVICE_INTERFACE_REPORT",
          offset,
          length: 0x40,
        })) as TdispMessageOf<"DEVICE_INTERFACE_REPORT">;
        parts.push(m.portion);
        offset += m.portion.length;
        remainder = m.remainderLength;
      }
      expect(parts.length).toBe(2); // 64 + 4 bytes: 16 + 3 ranges + 4
      const report = decodeDeviceInterfaceReport(Buffer.concat(parts));
      expect(report.mmioRanges.map((m) => [m.firstPage, m.numberOfPages, m.rangeAttributes])).toEqual([
        [0x11_0000n, 4, 0],
        [0x11_0004n, 1, 3], // the MSI-X table and PBA share a page
        [0x11_0005n, 3, 0],
      ]);
      expect((await ask({ code: "START_INTERFACE_REQUEST", startInterfaceNonce: nonce })).code).toBe(
        "START_INTERFACE_RESPONSE",
      );
      expect(await state()).toBe(TdiState.RUN);
      expect(device.tdisp.state(PF)).toBe("RUN");
      // Poke the running TDI's BAR as a person would, with setpci over the control wire.
      await exec(process.execPath, [
        cliPath(),
        "setpci",
        "-s",
        "01:00.0",
        "BASE_ADDRESS_0=0x50000000",
        "--control",
        formatEndpoint(device.control),
      ]);
      expect(await state()).toBe(TdiState.ERROR);
      expect((await ask({ code: "STOP_INTERFACE_REQUEST" })).code).toBe("STOP_INTERFACE_RESPONSE");
      expect(await state()).toBe(TdiState.CONFIG_UNLOCKED);

      // The same through the host (`setpci --api`): its config write is the device's, unfiltered.
      const lock: TdispBody = {
        code: "LOCK_INTERFACE_REQUEST",
        flags: 0,
        defaultStreamId: 0,
        mmioReportingOffset: 0n,
        bindP2pAddressMask: 0n,
      };
      const host = await startHost({ devices: [{ control: device.control, source: "flag" }] });
      try {
        await registryReaches(host.registry, () =>
          [...host.registry.devices.values()].some((d) => d.state === "present"),
        );
        await ask(lock);
        expect(await state()).toBe(TdiState.CONFIG_LOCKED);
        await exec(process.execPath, [
          cliPath(),
          "setpci",
          "-s",
          "01:00.0",
          "BASE_ADDRESS_0=0x60000000",
          "--api",
          formatEndpoint(host.api),
        ]);
        expect(await state()).toBe(TdiState.ERROR);
      } finally {
        await host.stop();
      }
      expect((await ask({ code: "STOP_INTERFACE_REQUEST" })).code).toBe("STOP_INTERFACE_RESPONSE");

      // Locked in this session, which then ends: ERROR.
      await ask(lock);
      await endSession(r, session, 0);
      expect(device.tdisp.state(PF)).toBe("ERROR");
    } finally {
      doe.close();
      await device.stop();
    }
  });
});
