/**
 * Our requester against DMTF's spdm_responder_emu (set SPDM_EMU_BIN to spdm-emu's build/bin).
 * Each test starts its own responder on a free port (it exits when its requester disconnects) and
 * ends it with SHUTDOWN; whatever is still running afterwards is killed.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BaseAsymAlgo, BaseHashAlgo } from "../../protocol/spdm/codes.js";
import { DoeClient } from "../../src/doe/client.js";
import {
  exited,
  SPDM_EMU_BIN,
  startResponder as startAt,
  stopResponders,
} from "../../src/fixture/spdm-emu-responder.js";
import { authenticateAll } from "../../src/requester/connection.js";
import { CMA, cmaTransport, runRequester } from "../../src/requester/run.js";
import { SpdmRequester, SpdmRequesterError, type SpdmTransport } from "../../src/spdm/requester.js";

const BIN = SPDM_EMU_BIN;
const root = (dir: string) => readFileSync(join(BIN ?? "", dir, "ca.cert.der"));
const startResponder = async () => (await startAt()).port;

afterEach(stopResponders);

describe.skipIf(!BIN)("our requester against DMTF spdm_responder_emu", () => {
  it("authenticates with the defaults (SPDM 1.4, ECDSA P-384, SHA-384) against the ecp384 root", async () => {
    const { port, child } = await startAt();
    const s = await runRequester({ host: "127.0.0.1", port }, { trustRoot: root("ecp384") });
    expect(s.version).toBe("1.4");
    expect(s.algorithms).toMatchObject({ BaseAsym: "ECDSA_P384", BaseHash: "SHA_384" });
    expect(s.certificateChain.trustAnchor).toContain("ECP384 CA");
    expect(s.challenge.summaryHashChecked).toBe(true);
    expect(s.measurements).toMatchObject({ mode: "ONE_BY_ONE", signed: true });
    expect(await exited(child)).toBe(0); // SHUTDOWN
  });

  it("authenticates at SPDM 1.2 with P-256 / SHA-256 against the ecp256 root", async () => {
    const port = await startResponder();
    const s = await runRequester(
      { host: "127.0.0.1", port },
      {
        versions: [0x12],
        baseAsymAlgo: BaseAsymAlgo.ECDSA_P256,
        baseHashAlgo: BaseHashAlgo.SHA_256,
        trustRoot: root("ecp256"),
      },
    );
    expect(s.version).toBe("1.2");
    expect(s.algorithms).toMatchObject({ BaseAsym: "ECDSA_P256", BaseHash: "SHA_256" });
    expect(s.certificateChain.leafSubject).toContain("ECP256 responder cert");
  });

  it("fetches responses larger than our DataTransferSize with CHUNK_GET", async () => {
    const port = await startResponder();
    const doe = await DoeClient.connect({ host: "127.0.0.1", port });
    expect(doe.supports(CMA)).toBe(true);
    const codes: number[] = [];
    const cma = cmaTransport(doe);
    const transport: SpdmTransport = {
      send(req) {
        codes.push(req[1]!);
        return cma.send(req);
      },
    };
    const s = await authenticateAll(
      new SpdmRequester(transport, {
        dataTransferSize: 0x100,
        measurementMode: "ALL",
        trustRoot: root("ecp384"),
      }),
    );
    await doe.end("SHUTDOWN");
    expect(codes.filter((c) => c === 0x86).length).toBeGreaterThan(3);
    expect(s.measurements).toMatchObject({ mode: "ALL", signed: true });
  });

  it("rejects the chain against another root, and still shuts the responder down", async () => {
    const { port, child } = await startAt();
    const e = await runRequester({ host: "127.0.0.1", port }, { trustRoot: root("ecp256") }).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(SpdmRequesterError);
    expect((e as SpdmRequesterError).kind).toBe("certificate");
    expect((e as Error).message).toMatch(
      /^slot 0 certificate chain: .*self-signed root other than the trust root/,
    );
    expect(await exited(child)).toBe(0);
  });

  it("keeps the responder for the next requester with CONTINUE", async () => {
    const port = await startResponder();
    const endpoint = { host: "127.0.0.1", port };
    await runRequester(endpoint, { measurementMode: "ALL", exeMode: "CONTINUE" });
    const s = await runRequester(endpoint, { measurementMode: "ALL", trustRoot: root("ecp384") });
    expect(s.exchanges).toBe(9);
  });
});
