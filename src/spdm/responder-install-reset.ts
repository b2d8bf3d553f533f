/**
 * CERT_INSTALL_RESET_CAP (DSP0274 1.2.1/1.3): a device that completes GET_CSR and SET_CERTIFICATE
 * only across a reset, as libspdm 7199f344's responder with its sample device (libspdm_rsp_csr.c,
 * libspdm_rsp_set_certificate_rsp.c, os_stub/spdm_device_secret_lib_sample/csr.c) answers them. What
 * waits is provisioning.ts's (kept in the state directory); its reset() is the device's reset.
 * - GET_CSR, 1.3 on: a new request (CSRTrackingTag 0) gets the lowest free tag of 1..7 (Busy when
 *   all are taken; Overwrite first drops every pending one) and ERROR ResetRequired with that tag as
 *   ErrorData. The same request with that tag retrieves the CSR once the device has been reset, which
 *   frees the tag; before the reset it gets ResetRequired again. A tag nothing waits under, or a
 *   request that differs from the one that got the tag, is an invalid request (libspdm: Busy for the
 *   latter). Overwrite with a tag is invalid.
 * - GET_CSR before 1.3 (no tag field): libspdm's single pending request. The same request bytes
 *   after a reset retrieve the CSR; any other request replaces the pending one; ErrorData 0.
 * - SET_CERTIFICATE (and 1.3 Erase), once the chain checks out: ERROR ResetRequired, the slot's new
 *   chain pending. Until the reset GET_DIGESTS, and GET_CERTIFICATE of that slot, answer
 *   ResetRequired too (libspdm's cert_slot_reset_mask).
 * The CSR is made when it is asked for (so a missing key fails at once, OperationFailed); the reset
 * only makes it available.
 *
 * SET_KEY_PAIR_RESET_CAP (1.4) the same way, as libspdm's responder with its sample device
 * (libspdm_rsp_set_key_pair_info_ack.c, os_stub/spdm_device_secret_lib_sample/key_pair.c): a
 * SET_KEY_PAIR_INFO (any operation) that passes the checks gets ERROR ResetRequired and waits,
 * one per key pair (a later one replaces it), and the reset makes it. The same request after the
 * reset gets SET_KEY_PAIR_INFO_ACK (the sample's repeated request), and before it ResetRequired
 * again. GET_KEY_PAIR_INFO reports the key pair as it is until then (1.4's KEY_PAIR_INFO has no
 * field for a pending change).
 */

import { SpdmVersion } from "../../protocol/spdm/codes.js";
import type { GetCsr } from "../../protocol/spdm/provision.js";
import { GetCsrAttribute } from "../../protocol/spdm/provision.js";
import type { KeyPairChange } from "./provisioning.js";
import { check, fail, type ResponderContext } from "./responder-context.js";
import type { SlotKey } from "./responder-slots.js";

type ResetContext = Pick<ResponderContext, "provisioning">;

/** DSP0274's CSRTrackingTag values (3 bits, 0 meaning none). */
const TAGS = [1, 2, 3, 4, 5, 6, 7];

/** GET_CSR on a device with CERT_INSTALL_RESET_CAP: the CSR once a reset has completed it, else ERROR ResetRequired. */
export async function csrAcrossReset(
  c: ResetContext,
  m: GetCsr,
  request: Buffer,
  make: () => Promise<Buffer>,
): Promise<Buffer> {
  const { provisioning } = c;
  const pending = provisioning.pendingCsrs;
  const tagged = m.version >= SpdmVersion.V1_3;
  const tag = tagged
    ? (m.attributes & GetCsrAttribute.TRACKING_TAG_MASK) >> GetCsrAttribute.TRACKING_TAG_SHIFT
    : 0;
  const overwrite = tagged && (m.attributes & GetCsrAttribute.OVERWRITE) !== 0;
  check(!(overwrite && tag !== 0));
  const waiting = pending.get(tag);
  const same = waiting?.request.equals(request) === true;
  if (tag !== 0) check(same);
  if (waiting && same) {
    if (!waiting.ready) fail("ResetRequired", tag);
    provisioning.dropCsrs(tag);
    return waiting.csr;
  }
  if (overwrite) provisioning.dropCsrs();
  const free = tagged ? TAGS.find((t) => !pending.has(t)) : 0;
  if (free === undefined) fail("Busy");
  const csr = await make();
  // Retrieved by the same request with the tag set (as libspdm caches it) and Overwrite clear.
  const retrieval = Buffer.from(request);
  if (tagged)
    retrieval[3] =
      (retrieval[3]! & ~(GetCsrAttribute.OVERWRITE | GetCsrAttribute.TRACKING_TAG_MASK)) |
      (free << GetCsrAttribute.TRACKING_TAG_SHIFT);
  provisioning.deferCsr(free, retrieval, csr);
  fail("ResetRequired", free);
}

/** SET_CERTIFICATE on a device with CERT_INSTALL_RESET_CAP: the slot changes at the reset. */
export function setCertificateAcrossReset(c: ResetContext, slot: number, key: SlotKey | null): never {
  c.provisioning.defer(slot, key);
  fail("ResetRequired");
}

/** GET_DIGESTS (any slot) and GET_CERTIFICATE (`slot`) while a SET_CERTIFICATE waits for the reset. */
export function checkNoPendingSlot(c: ResetContext, slot?: number): void {
  const mask = c.provisioning.pendingSlotMask;
  check((slot === undefined ? mask : mask & (1 << slot)) === 0, "ResetRequired");
}

/** SET_KEY_PAIR_INFO on a device with SET_KEY_PAIR_RESET_CAP: the key pair changes at the reset. */
export function keyPairChangeAcrossReset(c: ResetContext, change: KeyPairChange): never {
  c.provisioning.deferKeyPairChange(change);
  fail("ResetRequired");
}

/** The same SET_KEY_PAIR_INFO again after the reset made it: acknowledged (and forgotten). */
export function keyPairChangeDone(c: ResetContext, change: KeyPairChange): boolean {
  const done = c.provisioning.pendingKeyPairs.get(change.id);
  const same =
    done?.ready === true &&
    (["operation", "usage", "algo", "assocMask"] as const).every((k) => done.change[k] === change[k]);
  if (same) c.provisioning.dropKeyPairChange(change.id);
  return same;
}
