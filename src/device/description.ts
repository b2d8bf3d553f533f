/**
 * Device descriptions: a device is data (docs/ARCHITECTURE.md). A JSON file is validated
 * against this schema; an error names the path of the bad field. Every field has a default, so
 * `{}` is the default device: one function with TEE-IO and one mailbox on port 2323.
 */
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import * as z from "zod";
import {
  capabilityIssues,
  MAX_SECONDARY_SESSIONS,
  MemoryEncryptionAlgorithm,
} from "../../protocol/cxl-tsp.js";
import { type DoeProtocol, parseProtocolId } from "../../protocol/doe.js";
import {
  BAR_COUNT,
  Bar,
  CONFIG_SPACE_BYTES,
  Doe,
  FIRST_EXT_CAP,
  Ide,
  ideCapabilityBytes,
  Msix,
  msixPbaBytes,
  PORT_TYPES,
  parseRoutingId,
  routingId,
  Sriov,
  vfRoutingId,
} from "../../protocol/pci.js";
import { resolveSlotPaths, spdmSettingsSchema } from "../spdm/responder-settings.js";
import { tspCapabilities } from "./cxl-tsp.js";
import { faultRuleSchema, MAX_FAULT_RULES } from "./faults.js";

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

const isPowerOfTwo = (n: number) => n > 0 && 2 ** Math.round(Math.log2(n)) === n;

const fail = (ctx: z.RefinementCtx, path: PropertyKey[], message: string) =>
  ctx.addIssue({ code: "custom", path, message });

/**
 * A memory BAR (PCIe r6.0 §7.5.1.2.1): `size` bytes, a power of two of at least 16 (at most 2 GiB
 * for a 32-bit BAR); a 64-bit BAR takes slots `index` and `index + 1`.
 */
const barSchema = z
  .strictObject({
    index: uint(BAR_COUNT - 1),
    type: z.enum(["mem32", "mem64"]).default("mem64"),
    size: uint(Number.MAX_SAFE_INTEGER),
    prefetchable: z.boolean().default(false),
  })
  .superRefine((b, ctx) => {
    if (!isPowerOfTwo(b.size) || b.size < Bar.MIN_SIZE)
      fail(ctx, ["size"], "must be a power of two of at least 16 bytes");
    else if (b.type === "mem32" && b.size > Bar.MAX_SIZE_32)
      fail(ctx, ["size"], "must be at most 2 GiB for a 32-bit BAR");
    if (b.type === "mem64" && b.index === BAR_COUNT - 1)
      fail(ctx, ["index"], "a 64-bit BAR takes two slots; 5 is the last");
  });

/** A BAR array (the header's, or SR-IOV's VF BARs): no two BARs share a slot. */
const barsSchema = z.array(barSchema).superRefine((bars, ctx) => {
  const owner = new Map<number, number>();
  bars.forEach((b, i) => {
    const slots = b.type === "mem64" ? [b.index, b.index + 1] : [b.index];
    const clash = slots.find((slot) => owner.has(slot));
    if (clash !== undefined)
      fail(ctx, [i, "index"], `BAR slot ${clash} is already taken by BAR ${owner.get(clash)}`);
    else for (const slot of slots) owner.set(slot, b.index);
  });
});

export type BarDescription = z.output<typeof barSchema>;

/** Where an MSI-X structure sits: a BAR (by its index) and a QWORD-aligned offset into it. */
const barLocation = z.strictObject({
  bar: uint(BAR_COUNT - 1),
  offset: uint(Msix.MAX_OFFSET).refine((o) => o % 8 === 0, "must be a multiple of 8 (QWORD-aligned)"),
});

/**
 * MSI-X (PCIe r6.0 §7.7.2): `tableSize` vectors, the table and the Pending Bit Array in BARs of the
 * function; the PBA follows the table unless placed.
 */
const msixSchema = z
  .strictObject({
    tableSize: uint(Msix.MAX_TABLE_SIZE).pipe(z.number().min(1)),
    table: barLocation.default({ bar: 0, offset: 0 }),
    pba: barLocation.optional(),
  })
  .transform((m) => ({
    ...m,
    pba: m.pba ?? { bar: m.table.bar, offset: m.table.offset + m.tableSize * Msix.ENTRY_SIZE },
  }));

/**
 * The IDE extended capability (PCIe r6.0 §7.9.26): how many Link IDE stream register blocks (one per
 * traffic class) and Selective IDE stream register blocks, and how many address association blocks
 * each selective stream has. Streams start Insecure.
 */
const ideSchema = z
  .strictObject({
    linkStreams: uint(Ide.MAX_LINK_STREAMS).default(0),
    selectiveStreams: uint(Ide.MAX_SELECTIVE_STREAMS).default(1),
    addressBlocks: uint(Ide.MAX_ADDRESS_BLOCKS).default(1),
    /** TEE-Limited Stream Supported, which TDISP's streams use. */
    teeLimited: z.boolean().default(true),
    /**
     * The IDE_KM PortIndex this capability answers (PCIe r6.0 §6.33.3), also the MaxPortIndex of
     * its QUERY_RESP. DMTF's requester (spdm-emu 85436d53) asks for port 1.
     */
    portIndex: uint(0xff).default(1),
  })
  .refine((i) => i.linkStreams + i.selectiveStreams > 0, {
    path: ["selectiveStreams"],
    message: "an IDE capability needs at least one link or selective stream",
  });

/**
 * A CXL port's IDE key management (CXL IDE-KM, src/device/cxl-ide-km.ts): what QUERY_RESP's Caps
 * byte and the CXL IDE Capability register (CXL 3.1 §8.2.4.22) announce. The defaults are what
 * DMTF's requester exercises fully (spdm-emu 85436d53's sample port: Caps 0x71, port 0).
 */
const cxlIdeSchema = z.strictObject({
  /** The PortIndex this port answers, also the MaxPortIndex of its QUERY_RESP. */
  portIndex: uint(0xff).default(0),
  /** KEY_GEN_CAP: GET_KEY returns a key the device generated. */
  keyGeneration: z.boolean().default(true),
  /** IV_GEN_CAP: GET_KEY returns an IV the device generated. */
  ivGeneration: z.boolean().default(true),
  /** K_SET_STOP_CAP: the port accepts K_SET_STOP. */
  kSetStop: z.boolean().default(true),
  /** The CXL IDE modes K_SET_GO may start (Skid, Containment). */
  modes: z
    .array(z.enum(["SKID", "CONTAINMENT"]))
    .min(1)
    .default(["SKID", "CONTAINMENT"]),
});

/** CXL protocols a function speaks (VendorID 0x1E98 over SPDM). */
const cxlSchema = z.strictObject({
  ide: cxlIdeSchema.optional(),
});

/**
 * SR-IOV on a physical function (PCIe r6.0 §9.3.3). numVfs and vfEnable are the reset values of
 * the registers a host may rewrite; VF routing IDs are PF + firstVfOffset + vfStride × index.
 * vfBars are each VF's BARs, programmed once in the PF for all VFs.
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
    vfBars: barsSchema.default([{ index: 0, type: "mem64", size: 0x4000, prefetchable: true }]),
  })
  .refine((s) => s.numVfs <= s.totalVfs, { path: ["numVfs"], message: "must not exceed totalVfs" })
  .refine((s) => s.vfStride > 0 || s.totalVfs === 1, {
    path: ["vfStride"],
    message: "must be at least 1 with more than one VF",
  });

const functionFields = z.strictObject({
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
  bars: barsSchema.default([{ index: 0, type: "mem64", size: 0x10_0000, prefetchable: true }]),
  msix: msixSchema.optional(),
  ide: ideSchema.optional(),
  cxl: cxlSchema.optional(),
});

const functionSchema = functionFields.superRefine(checkFunction, {
  when: (payload) => payload.issues.length === 0,
});

/** Checks across a function's fields, once each field is valid on its own. */
function checkFunction(f: z.output<typeof functionFields>, ctx: z.RefinementCtx): void {
  if (f.msix) checkMsixPlacement(f.msix, f.bars, ctx);
  const extended =
    f.mailboxes.length * Doe.SIZEOF +
    (f.sriov ? Sriov.SIZEOF : 0) +
    (f.ide ? ideCapabilityBytes(f.ide.linkStreams, f.ide.selectiveStreams, f.ide.addressBlocks) : 0);
  const room = CONFIG_SPACE_BYTES - FIRST_EXT_CAP;
  if (extended > room)
    fail(
      ctx,
      [f.ide ? "ide" : "mailboxes"],
      `the extended capabilities need ${extended} bytes, more than the ${room} of extended config space`,
    );
}

/** The MSI-X table and PBA must each lie inside a described BAR, and not overlap. */
function checkMsixPlacement(
  msix: z.output<typeof msixSchema>,
  bars: readonly BarDescription[],
  ctx: z.RefinementCtx,
): void {
  const places = [
    { name: "table", at: msix.table, bytes: msix.tableSize * Msix.ENTRY_SIZE },
    { name: "pba", at: msix.pba, bytes: msixPbaBytes(msix.tableSize) },
  ] as const;
  for (const { name, at, bytes } of places) {
    const bar = bars.find((b) => b.index === at.bar);
    if (!bar) fail(ctx, ["msix", name, "bar"], `BAR ${at.bar} is not described`);
    else if (at.offset > Msix.MAX_OFFSET) fail(ctx, ["msix", name, "offset"], "must fit in 32 bits");
    else if (at.offset + bytes > bar.size)
      fail(
        ctx,
        ["msix", name, "offset"],
        `${bytes} bytes at offset ${at.offset} do not fit in BAR ${at.bar} (${bar.size} bytes)`,
      );
  }
  const [table, pba] = places;
  if (
    table.at.bar === pba.at.bar &&
    table.at.offset < pba.at.offset + pba.bytes &&
    pba.at.offset < table.at.offset + table.bytes
  )
    fail(ctx, ["msix", "pba", "offset"], "the PBA overlaps the table");
}

const hexId = /^0x[0-9a-fA-F]{1,8}$/;

/**
 * TDISP (src/device/tdisp.ts). `functionIdAliases` maps INTERFACE_ID FunctionIDs a requester uses
 * instead of a TDI's routing ID ("0x…", 32 bits) to the function ("bb:dd.f") they name: DMTF's
 * requester always sends 0xBEEF.
 */
const tdispSchema = z.strictObject({
  functionIdAliases: z
    .record(
      z.string(),
      z.string().refine((t) => parseRoutingId(t) !== undefined, 'must be a routing ID "bb:dd.f"'),
    )
    .superRefine((aliases, ctx) => {
      for (const alias of Object.keys(aliases))
        if (!hexId.test(alias)) fail(ctx, [alias], "must be a 0x-prefixed hex FunctionID of at most 32 bits");
    })
    .default({}),
});

/**
 * CXL TSP (CXL 3.1 §11.5; src/device/cxl-tsp.ts), served at function 0 as a CXL memory device's
 * security manager would. The capabilities default to spdm-emu 85436d53's (memory encryption with
 * AES-XTS-256, read access control with implicit and explicit in-band TE state changes at 64-byte
 * granularity, locked firmware update, one secondary session), which DMTF's requester accepts.
 */
const cxlTspSchema = z.strictObject({
  /** Bytes of memory the TE state covers: SET_TARGET_TE_STATE ranges must lie inside. */
  memorySize: uint(Number.MAX_SAFE_INTEGER)
    .refine((n) => n > 0 && n % 64 === 0, "must be a positive multiple of 64")
    .default(0x1000_0000),
  /** Secondary SPDM sessions SET_TARGET_CONFIGURATION may key (PSK, hint SECONDARY_SESSION_<i>_PSK). */
  secondarySessions: uint(MAX_SECONDARY_SESSIONS).default(1),
  memoryEncryption: z.boolean().default(true),
  /** MemoryEncryptionAlgorithmsSupported bits (0x1 AES-XTS-128, 0x2 AES-XTS-256). */
  memoryEncryptionAlgorithms: uint(0xffff_ffff).default(MemoryEncryptionAlgorithm.AES_XTS_256),
  /** TEStateChangeAndAccessControlFeaturesSupported bits. */
  teStateFeatures: uint(0xffff).default(0x16),
  explicitOobTeStateGranularity: uint(0xffff_ffff).default(0),
  explicitIbTeStateGranularity: uint(0xffff_ffff).default(0x1),
  lockedTargetFwUpdate: z.boolean().default(true),
});

export const deviceSchema = z
  .strictObject({
    name: z.string().min(1).default("doe-emu"),
    bus: uint(0xff).default(1),
    device: uint(31).default(0),
    functions: z
      .array(functionSchema)
      .min(1)
      // IDE on the default function, so an IDE_KM requester finds a port on `{}`.
      .default([functionSchema.parse({ ide: {} })]),
    /** SPDM responder of every CMA/SPDM mailbox (src/spdm/responder-settings.ts). */
    spdm: spdmSettingsSchema.prefault({}),
    tdisp: tdispSchema.prefault({}),
    cxlTsp: cxlTspSchema.optional(),
    /** Fault injection rules (src/device/faults.ts), armed from the start. */
    faults: z.array(faultRuleSchema).max(MAX_FAULT_RULES).default([]),
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
    if (d.cxlTsp) checkCxlTsp(d.cxlTsp, d.spdm, ctx);
    for (const [alias, target] of Object.entries(d.tdisp.functionIdAliases)) {
      const path = ["tdisp", "functionIdAliases", alias];
      const id = Number.parseInt(alias.slice(2), 16);
      const rid = parseRoutingId(target)!;
      if (!owner.has(rid)) fail(ctx, path, `${target} is no function of this device, nor one of its VFs`);
      else if (owner.has(id) && id !== rid)
        fail(ctx, path, `${alias} is the routing ID of ${owner.get(id)}, not an alias`);
    }
  });

/** Capabilities DMTF's requester accepts, and room in the SPDM responder for the secondary sessions. */
function checkCxlTsp(
  tsp: z.output<typeof cxlTspSchema>,
  spdm: z.output<typeof spdmSettingsSchema>,
  ctx: z.RefinementCtx,
): void {
  for (const problem of capabilityIssues(tspCapabilities(tsp))) fail(ctx, ["cxlTsp"], problem);
  if (tsp.secondarySessions === 0) return;
  if (spdm.sessionLimit < tsp.secondarySessions + 1)
    fail(
      ctx,
      ["spdm", "sessionLimit"],
      `must be at least 1 + cxlTsp.secondarySessions (${tsp.secondarySessions})`,
    );
  if (!spdm.capabilities.includes("PSK") && !spdm.capabilities.includes("PSK_WITH_CONTEXT"))
    fail(ctx, ["spdm", "capabilities"], "secondary CXL TSP sessions need PSK or PSK_WITH_CONTEXT");
}

export type DeviceDescription = z.output<typeof deviceSchema>;
export type CxlTspDescription = z.output<typeof cxlTspSchema>;
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

let parsedDefault: DeviceDescription | undefined;
/**
 * The default device, `{}` validated once (a first zod parse compiles the schema's checks, a sixth of
 * a device's start-up; the device's startup snapshot does it at build time); each caller gets its own copy.
 */
export function defaultDescription(): DeviceDescription {
  parsedDefault ??= parseDescription({});
  return structuredClone(parsedDefault);
}
