/**
 * Config space for lspci and setpci, one interface over two paths: a device's control endpoint
 * (`--control`), or the TSM host's management API (`--api`), which forwards every access to the
 * device that owns the function, unfiltered.
 */
import type { Argv } from "yargs";
import { type ConfigWidth, formatRoutingId, parseRoutingId } from "../../protocol/pci.js";
import type { ConfigReadView, FunctionsView } from "../host/config-access.js";
import { readConfigBytes } from "../host/config-access.js";
import { ControlClient } from "../host/control-client.js";
import { scanBus } from "../host/scan.js";
import { type Endpoint, parseEndpoint } from "../net/framed.js";

export interface PciAccess {
  /** The functions to list: PFs, each with its VFs after it; a VF names its PF. */
  functions(): Promise<{ rid: number; pf?: number }[]>;
  read(rid: number, offset: number, width: ConfigWidth): Promise<number>;
  write(rid: number, offset: number, width: ConfigWidth, value: number): Promise<void>;
  /** The first `bytes` of a function's config space. */
  snapshot(rid: number, bytes: number): Promise<Buffer>;
}

export interface AccessArgs {
  control?: string;
  api?: string;
}

export const accessOptions = <T>(y: Argv<T>) =>
  y
    .option("control", { type: "string", describe: "A device's control endpoint HOST:PORT (or --api)" })
    .option("api", {
      type: "string",
      describe:
        "The host's management API ADDR:PORT (or --control): the functions of every device it knows, each access forwarded to the device that owns it",
    });

/** `bb:dd.f` to a routing ID, or a clear error. */
export function parseBdf(text: string): number {
  const rid = parseRoutingId(text);
  if (rid === undefined) throw new Error(`"${text}" is not a bus:device.function like 01:00.0`);
  return rid;
}

export const noSuchDevice = (rid: number) => new Error(`no such device ${formatRoutingId(rid)}`);

/** Opens the access `--control` or `--api` names (exactly one of them), runs `body`, closes. */
export async function withAccess<T>(argv: AccessArgs, body: (access: PciAccess) => Promise<T>): Promise<T> {
  if ((argv.control === undefined) === (argv.api === undefined))
    throw new Error("give one of --control HOST:PORT (a device) and --api ADDR:PORT (the host)");
  if (argv.api !== undefined) return body(await apiAccess(parseEndpoint(argv.api)));
  const client = await ControlClient.connect(parseEndpoint(argv.control!));
  try {
    return await body(controlAccess(client));
  } finally {
    client.close();
  }
}

function controlAccess(client: ControlClient): PciAccess {
  const read = (rid: number, offset: number, width: ConfigWidth) => client.cfgRead(rid, offset, width);
  return {
    functions: async () => scanBus(read, (await client.identity()).bus, (a) => client.cfgBatch(a)),
    read,
    write: (rid, offset, width, value) => client.cfgWrite(rid, offset, width, value),
    snapshot: (rid, bytes) => readConfigBytes(read, rid, 0, bytes),
  };
}

/** Through the host: one HTTP request per access, so a snapshot is one request, not one per DW. */
async function apiAccess(api: Endpoint): Promise<PciAccess> {
  // Loaded only here, as `host status` does: the device process need not load an HTTP client.
  const { apiRequest } = await import("../host/api-client.js");
  const call = async <V>(method: "GET" | "POST", rid: number | undefined, path: string, body?: unknown) => {
    const rsp = await apiRequest<V & { error?: string }>(api, method, path, body);
    if (rsp.status === 404 && rid !== undefined) throw noSuchDevice(rid);
    if (rsp.status !== 200) throw new Error(`${method} ${path}: ${rsp.body.error ?? rsp.status}`);
    return rsp.body;
  };
  const configPath = (rid: number) => `/v1/functions/${formatRoutingId(rid)}/config`;
  const range = async (rid: number, offset: number, length: number) => {
    const view = await call<ConfigReadView>(
      "GET",
      rid,
      `${configPath(rid)}?offset=${offset}&length=${length}`,
    );
    return Buffer.from(view.data, "hex");
  };
  return {
    functions: async () =>
      (await call<FunctionsView>("GET", undefined, "/v1/functions")).functions.map((f) => ({
        rid: parseBdf(f.bdf),
        pf: f.pf === null ? undefined : parseBdf(f.pf),
      })),
    read: async (rid, offset, width) => (await range(rid, offset, width)).readUIntLE(0, width),
    write: async (rid, offset, width, value) => {
      await call("POST", rid, configPath(rid), { offset, width, value: value >>> 0 });
    },
    snapshot: (rid, bytes) => range(rid, 0, bytes),
  };
}
