/** Waits on the host registry's events, not on a clock: every change of the registry is one. */
import type { HostEvent, Registry } from "../../src/host/registry.js";

/** Resolves once `holds()` is true: at once, or after the registry event that makes it so. */
export function registryReaches(registry: Registry, holds: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (!holds()) return;
      registry.off("event", check);
      resolve();
    };
    registry.on("event", check);
    check();
  });
}

/** Resolves with the next registry event of this kind; call it before what causes the event. */
export function nextEvent<K extends HostEvent["event"]>(
  registry: Registry,
  kind: K,
): Promise<Extract<HostEvent, { event: K }>> {
  return new Promise((resolve) => {
    const check = (e: HostEvent) => {
      if (e.event !== kind) return;
      registry.off("event", check);
      resolve(e as Extract<HostEvent, { event: K }>);
    };
    registry.on("event", check);
  });
}
