/** What our requester's provisioning steps report against DMTF's spdm_responder_emu. */
import { expect } from "vitest";
import type { ProvisionSummary } from "../../src/spdm/requester-provision.js";

/** Every step ran: DMTF's three MEL entries, a signed EP_INFO, key pair 1, a CSR, its slot 0 chain put back. */
export function expectEveryProvisionStep(p: ProvisionSummary): void {
  expect(p.skipped).toEqual([]);
  expect(p.mel?.entries).toBe(3);
  expect(p.endpointInfo?.signed).toBe(true);
  expect(p.keyPair?.id).toBe(1);
  expect(p.keyPairErased).toBe(1);
  expect(p.csr?.length).toBeGreaterThan(100);
  expect(p.setCertificate).toEqual({ slot: 0, certificates: 3 });
}
