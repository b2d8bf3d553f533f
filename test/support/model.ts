/** A DeviceModel built in-process from a description, and the config-space walks a host does on it. */
import { CAP_LIST_NEXT, decodeExtCapHeader, FIRST_EXT_CAP, Header } from "../../protocol/pci.js";
import type { DeviceDescription } from "../../src/device/description.js";
import { Mailbox } from "../../src/device/mailbox.js";
import { DeviceModel } from "../../src/device/model.js";
import { silentLogger } from "../../src/log.js";

/** The model of `desc`, mailbox j of function i claiming endpoint port 5000 + 10i + j. */
export function modelOf(desc: DeviceDescription): DeviceModel {
  const mailboxes = desc.functions.map((f) => f.mailboxes.map((m) => new Mailbox(m.protocols, silentLogger)));
  const endpoints = desc.functions.map((f, fi) =>
    f.mailboxes.map((_, mi) => ({ host: "127.0.0.1", port: 5000 + fi * 10 + mi })),
  );
  return new DeviceModel(desc, mailboxes, endpoints);
}

/** Offset of the first extended capability with `id`, walking the list as Linux does. */
export function findExtCap(model: DeviceModel, rid: number, id: number): number | undefined {
  for (let at = FIRST_EXT_CAP, hops = 0; at && hops < 64; hops++) {
    const h = decodeExtCapHeader(model.configRead(rid, at, 4));
    if (h.id === id) return at;
    at = h.next;
  }
  return undefined;
}

/** Offset of the legacy capability with `id`, walking the list from the Capabilities Pointer. */
export function findCap(model: DeviceModel, rid: number, id: number): number | undefined {
  for (let at = model.configRead(rid, Header.CAPABILITY_LIST, 1) & 0xfc, hops = 0; at && hops < 48; hops++) {
    if (model.configRead(rid, at, 1) === id) return at;
    at = model.configRead(rid, at + CAP_LIST_NEXT, 1) & 0xfc;
  }
  return undefined;
}
