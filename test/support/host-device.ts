/** An in-process host with one in-process device announced to it, torn down after `body`. */
import type { DeviceDescription } from "../../src/device/description.js";
import { type RunningDevice, startDevice } from "../../src/device/device.js";
import { type Host, type HostOptions, startHost } from "../../src/host/host.js";
import { silentLogger } from "../../src/log.js";
import { registryReaches } from "./host-events.js";

/** Runs `body` once the host has added the device (its TDEVs and TDIs registered); stops both after. */
export async function withHostAndDevice(
  description: DeviceDescription,
  hostOptions: HostOptions,
  body: (host: Host, device: RunningDevice) => Promise<void>,
): Promise<void> {
  const host = await startHost({ hotplug: { host: "127.0.0.1", port: 0 }, ...hostOptions });
  const { registry } = host;
  const device = await startDevice({ description, port: 0, host: host.hotplug!, log: silentLogger });
  try {
    await registryReaches(registry, () => [...registry.devices.values()].some((d) => d.state === "present"));
    await body(host, device);
  } finally {
    await device.stop();
    await host.stop();
  }
}
