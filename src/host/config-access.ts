/**
 * Config space through the host's API: what GET /v1/functions and GET/POST
 * /v1/functions/{bdf}/config take and answer. Every access goes over the owning device's control
 * wire and is a real config access: nothing is filtered, so a BAR write to a locked TDI reaches the
 * device (and pushes the TDI to ERROR) exactly as it would from `--control`.
 */
import * as z from "zod";
import { allOnes, type ConfigWidth, formatRoutingId } from "../../protocol/pci.js";
import type { Registry } from "./registry.js";
import type { ConfigReader, ConfigWriter } from "./scan.js";

/** Bytes of a function's config space (PCIe extended config space). */
export const CONFIG_SPACE_SIZE = 4096;

/** The JSON of GET /v1/functions. */
export interface FunctionsView {
  functions: { bdf: string; device: string; vendorId: number; deviceId: number; pf: string | null }[];
}

/** The JSON of GET /v1/functions/{bdf}/config: `length` bytes from `offset`, as hex. */
export interface ConfigReadView {
  bdf: string;
  offset: number;
  length: number;
  data: string;
}

/** The JSON of POST /v1/functions/{bdf}/config: what was written and the value read back after it. */
export interface ConfigWriteView {
  bdf: string;
  offset: number;
  width: ConfigWidth;
  value: number;
}

/** A request the API answers with 400. */
export class BadConfigRequest extends Error {
  override readonly name = "BadConfigRequest";
}

/** Every function of every device the host knows, sorted by BDF. */
export function functionsView(registry: Registry): FunctionsView {
  const all = [...registry.devices.values()].flatMap((d) => d.functions.map((f) => ({ f, device: d.id })));
  return {
    functions: all
      .sort((a, b) => a.f.rid - b.f.rid)
      .map(({ f, device }) => ({
        bdf: formatRoutingId(f.rid),
        device,
        vendorId: f.vendorId,
        deviceId: f.deviceId,
        pf: f.pf === undefined ? null : formatRoutingId(f.pf),
      })),
  };
}

export const hasFunction = (registry: Registry, rid: number): boolean =>
  [...registry.devices.values()].some((d) => d.functions.some((f) => f.rid === rid));

/** `length` bytes of config space from `offset`, read a DW at a time through `read`. */
export async function readConfigBytes(
  read: ConfigReader,
  rid: number,
  offset: number,
  length: number,
): Promise<Buffer> {
  const start = offset & ~3;
  const dwords = Buffer.alloc(((offset + length + 3) & ~3) - start);
  for (let at = 0; at < dwords.length; at += 4) dwords.writeUInt32LE(await read(rid, start + at, 4), at);
  return dwords.subarray(offset - start, offset - start + length);
}

const number = z
  .string()
  .regex(/^(0x[0-9a-f]+|[0-9]+)$/i, "must be a decimal or 0x-prefixed hex number")
  .transform(Number);
/** The query of GET …/config (api-schemas.ts documents it). */
export const configRangeQuery = z.strictObject({ offset: number.optional(), length: number.optional() });
/** The body of POST …/config. */
export const configWriteBody = z.strictObject({
  offset: z
    .number()
    .int()
    .min(0)
    .max(CONFIG_SPACE_SIZE - 1),
  width: z.union([z.literal(1), z.literal(2), z.literal(4)]),
  value: z.number().int().min(0),
});

const issues = (e: z.ZodError) =>
  e.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");

/** GET …/config[?offset=&length=]: the whole config space unless told; the range must lie inside it. */
export async function readConfigRange(
  read: ConfigReader,
  rid: number,
  query: URLSearchParams,
): Promise<ConfigReadView> {
  const q = configRangeQuery.safeParse(Object.fromEntries(query));
  if (!q.success) throw new BadConfigRequest(`query: ${issues(q.error)}`);
  const offset = q.data.offset ?? 0;
  const length = q.data.length ?? CONFIG_SPACE_SIZE - offset;
  if (offset + length > CONFIG_SPACE_SIZE || length === 0)
    throw new BadConfigRequest(
      `offset ${offset} and length ${length} must name 1 to ${CONFIG_SPACE_SIZE} bytes inside config space`,
    );
  const data = await readConfigBytes(read, rid, offset, length);
  return { bdf: formatRoutingId(rid), offset, length, data: data.toString("hex") };
}

/** POST …/config {"offset", "width", "value"}: one aligned write, then the register read back. */
export async function writeConfig(
  read: ConfigReader,
  write: ConfigWriter,
  rid: number,
  body: unknown,
): Promise<ConfigWriteView> {
  const b = configWriteBody.safeParse(body);
  if (!b.success)
    throw new BadConfigRequest(`body must be {"offset": N, "width": 1|2|4, "value": N}: ${issues(b.error)}`);
  const { offset, width, value } = b.data;
  if (offset % width) throw new BadConfigRequest(`offset ${offset} is not aligned to width ${width}`);
  if (value > allOnes(width)) throw new BadConfigRequest(`value ${value} does not fit in ${width} bytes`);
  await write(rid, offset, width, value);
  return { bdf: formatRoutingId(rid), offset, width, value: await read(rid, offset, width) };
}
