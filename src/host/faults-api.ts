/**
 * Fault injection through the management API, forwarded over the device's control wire:
 *   POST   /v1/devices/{id}/faults   a rule (src/device/faults.ts) → 201 {"device", "id"}; 400 when refused
 *   GET    /v1/devices/{id}/faults   {"device", "rules": [... with "id" and "injected"], "injected": total}
 *   DELETE /v1/devices/{id}/faults   {"device", "cleared": n}
 * The host keeps each device's counts (FaultCounts) for the topology, refreshed by these calls and
 * by its liveness probe while the device has rules.
 */
import { ControlError, ControlErrorCode } from "../../protocol/control.js";
import { RegistryError } from "./registry.js";

/** A device's fault rules and how many faults they injected, as the topology shows them. */
export interface FaultCounts {
  rules: number;
  injected: number;
}

export function countFaults(rules: readonly Record<string, unknown>[]): FaultCounts {
  const injected = rules.reduce((n, r) => n + (typeof r.injected === "number" ? r.injected : 0), 0);
  return { rules: rules.length, injected };
}

/** One device's rules, over its control wire. */
export interface DeviceFaults {
  add(rule: Record<string, unknown>): Promise<number>;
  list(): Promise<Record<string, unknown>[]>;
  clear(): Promise<number>;
}

const PATH = /^\/v1\/devices\/([^/]+)\/faults$/;

/** The answer to a faults request, or undefined when `path` is not one. */
export async function faultsRoute(
  faultsOf: (device: string) => DeviceFaults,
  method: string,
  path: string,
  body: unknown,
): Promise<[number, unknown] | undefined> {
  const m = PATH.exec(path);
  if (!m) return undefined;
  let device: string;
  try {
    device = decodeURIComponent(m[1]!);
  } catch {
    return [400, { error: `malformed device in the path: ${m[1]}` }];
  }
  try {
    switch (method) {
      case "POST":
        if (typeof body !== "object" || body === null || Array.isArray(body))
          return [400, { error: "body must be a fault rule object" }];
        return [201, { device, id: await faultsOf(device).add(body as Record<string, unknown>) }];
      case "GET": {
        const rules = await faultsOf(device).list();
        return [200, { device, rules, injected: countFaults(rules).injected }];
      }
      case "DELETE":
        return [200, { device, cleared: await faultsOf(device).clear() }];
      default:
        return [405, { error: `${method} ${path}: use GET, POST or DELETE` }];
    }
  } catch (e) {
    if (e instanceof RegistryError) return [e.code === "notFound" ? 404 : 409, { error: e.message }];
    if (e instanceof ControlError && e.code === ControlErrorCode.BAD_FAULT)
      return [400, { error: `fault rule refused: ${e.message}` }];
    return [502, { error: `faults of ${device}: ${e instanceof Error ? e.message : String(e)}` }];
  }
}
