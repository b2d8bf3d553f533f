/**
 * Device descriptions: a device is data (docs/ARCHITECTURE.md). A JSON file is validated
 * against this schema; an error names the path of the bad field. Every field has a default, so
 * `{}` is the default device: one function with TEE-IO and one mailbox on port 2323.
 */
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { type DoeProtocol, parseProtocolId } from "../../protocol/doe.js";
import { PORT_TYPES, routingId, vfRoutingId } from "../../protocol/pci.js";
import { resolveSlotPaths, spdmSettingsSchema } from "../spdm/responder-settings.js";

/** A number given as JSON number or as a "0x…" hex string, within [0, max]. */
const uint = (max: number) =>
  z
    .union([z.number(), z.string().regex(/^0x[0-9a-fA-F]+$/, "must be a number or a 0x-prefixed hex string")])
    .transform((v) => (typeof v === "number" ? v : Number.parseInt(v.slice(2), 16)))
    .pipe(z.number().int().min(0).max(max));

const protocol = z.string().transform((text, ctx): DoeProtocol => {
  const p = parseProtocolId(text);
  if (!p) {
    ctx.addIssue({ code: "custom", message: `"${text}" is not a protocol of the form VVVV:TT (hex)` });
    return z.NEVER;
  }
  return p;
});

export const DEFAULT_MAILBOX_PORT = 2323;
export const DEFAULT_PROTOCOLS = ["0001:00", "0001:01", "0001:02"];

const mailboxSchema = z.strictObject({
  /** TCP port of the mailbox endpoint; 0 picks a free one. */
  port: uint(0xffff).optional(),
  protocols: z
    .array(protocol)
    .min(1)
    .default(DEFAULT_PROTOCOLS.map((p) => parseProtocolId(p)!))
    .refine((ps) => ps.some((p) => p.vendorId === 1 && p.type === 0), "must list DOE Discovery (0001:00)"),
});

/**
 * SR-IOV on a physical function (PCIe r6.0 §9.3.3). numVfs and vfEnable are the reset values of
 * the registers a host may rewrite; VF routing IDs are PF + firstVfOffset + vfStride × index.
 */
const sriovSchema = z
  .strictObject({
    totalVfs: uint(0xffff).pipe(z.number().min(1)),
    numVfs: uint(0xffff).default(0),
    vfEnable: z.boolean().default(false),
    firstVfOffset: uint(0xffff).pipe(z.number().min(1)).default(1),
    vfStride: uint(0xffff).default(1),
    /** Device ID of every VF; the PF's when absent. */
    vfDeviceId: uint(0xffff).optional(),
  })
  .refine((s) => s.numVfs <= s.totalVfs, { path: ["numVfs"], message: "must not exceed totalVfs" })
  .refine((s) => s.vfStride > 0 || s.totalVfs === 1, {
    path: ["vfStride"],
    message: "must be at least 1 with more than one VF",
  });

const functionSchema = z.strictObject({
  function: uint(7).default(0),
  vendorId: uint(0xfffe).default(0x1b36),
  deviceId: uint(0xffff).default(0xde00),
  revision: uint(0xff).default(1),
  /** 24-bit class code; the default is a processing accelerator. */
  classCode: uint(0xffffff).default(0x120000),
  portType: z.enum(Object.keys(PORT_TYPES) as [keyof typeof PORT_TYPES]).default("endpoint"),
  /** Device Capabilities bit 30, TEE-IO Supported. */
  teeIo: z.boolean().default(true),
  mailboxes: z
    .array(mailboxSchema)
    .default([{ protocols: DEFAULT_PROTOCOLS.map((p) => parseProtocolId(p)!) }]),
  sriov: sriovSchema.optional(),
});

export const deviceSchema = z
  .strictObject({
    name: z.string().min(1).default("doe-emu"),
    bus: uint(0xff).default(1),
    device: uint(31).default(0),
    functions: z
      .array(functionSchema)
      .min(1)
      .default([functionSchema.parse({})]),
    /** SPDM responder of every CMA/SPDM mailbox (src/spdm/responder-settings.ts). */
    spdm: spdmSettingsSchema.prefault({}),
  })
  .superRefine((d, ctx) => {
    const seen = new Set<number>();
    d.functions.forEach((f, i) => {
      if (seen.has(f.function)) {
        ctx.addIssue({
          code: "custom",
          path: ["functions", i, "function"],
          message: `function ${f.function} appears twice`,
        });
      }
      seen.add(f.function);
    });
    if (!seen.has(0))
      ctx.addIssue({ code: "custom", path: ["functions"], message: "a device needs function 0" });
    // Every routing ID a PF or a possible VF (up to TotalVFs) answers must be its own.
    const owner = new Map<number, string>();
    for (const f of d.functions) owner.set(routingId(d.bus, d.device, f.function), `function ${f.function}`);
    d.functions.forEach((f, i) => {
      if (!f.sriov) return;
      const pfRid = routingId(d.bus, d.device, f.function);
      for (let vf = 0; vf < f.sriov.totalVfs; vf++) {
        const rid = vfRoutingId(pfRid, f.sriov.firstVfOffset, f.sriov.vfStride, vf);
        const taken = owner.get(rid);
        const clash = rid > 0xffff ? "past routing ID 0xffff" : taken && `taken by ${taken}`;
        if (clash) {
          ctx.addIssue({
            code: "custom",
            path: ["functions", i, "sriov"],
            message: `VF ${vf} of function ${f.function} would sit at routing ID 0x${rid.toString(16)}, ${clash}`,
          });
          return;
        }
        owner.set(rid, `VF ${vf} of function ${f.function}`);
      }
    });
  });

export type DeviceDescription = z.output<typeof deviceSchema>;
export type FunctionDescription = DeviceDescription["functions"][number];
export type MailboxDescription = FunctionDescription["mailboxes"][number];

export class DescriptionError extends Error {
  override readonly name = "DescriptionError";
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) out += typeof key === "number" ? `[${key}]` : out ? `.${String(key)}` : String(key);
  return out || "(top level)";
}

/** Validates a parsed JSON value. `source` names where it came from, for the error message. */
export function parseDescription(value: unknown, source = "device description"): DeviceDescription {
  const result = deviceSchema.safeParse(value);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `  ${formatPath(i.path)}: ${i.message}`);
  throw new DescriptionError(`${source} is invalid:\n${lines.join("\n")}`);
}

export function loadDescription(file: string): DeviceDescription {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new DescriptionError(`cannot read ${file}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new DescriptionError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  const d = parseDescription(value, file);
  // Certificate and key files named in the description are relative to it.
  return { ...d, spdm: resolveSlotPaths(d.spdm, dirname(file)) };
}

export const defaultDescription = (): DeviceDescription => parseDescription({});
