/**
 * The host follows VF Enable and NumVFs: cleared behind its back (a control-wire write, as setpci on
 * the device would), the VFs' TDIs go within a probe and a bind of one is 404 at once (the host
 * re-checks before acting); written through the host's API, the registry follows before the write
 * returns; enabled again with another NumVFs, the new VFs get TDIs.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { formatRoutingId, Sriov, SriovCtrl } from "../../protocol/pci.js";
import { parseDescription } from "../../src/device/description.js";
import { apiRequest } from "../../src/host/api-client.js";
import { ControlClient } from "../../src/host/control-client.js";
import type { Registry } from "../../src/host/registry.js";
import { withHostAndDevice } from "../support/host-device.js";
import { nextEvent, registryReaches } from "../support/host-events.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/topology.json", import.meta.url));
const nic = parseDescription(JSON.parse(readFileSync(EXAMPLE, "utf8")).devices[0].description);
const PF = 0x0100;

const tdiBdfs = (registry: Registry) => [...registry.tdis.keys()].sort((a, b) => a - b).map(formatRoutingId);

it("drops the TDIs of VFs that VF Enable took away and gives TDIs to the VFs it brings", async () => {
  // A long probe interval: the write through the API must not wait for it.
  await withHostAndDevice(nic, { probeIntervalMs: 60_000 }, async (host, device) => {
    const { registry } = host;
    expect(tdiBdfs(registry)).toEqual(["01:00.0", "01:00.1", "01:00.2", "01:00.3"]);
    const sriov = [...registry.devices.values()][0]!.functions[0]!.sriov!.offset;
    const ctrlAt = sriov + Sriov.CTRL;
    const ctrl = device.model.configRead(PF, ctrlAt, 2);

    // Through the host: the answer comes after the registry has followed.
    const off = await apiRequest(host.api, "POST", `/v1/functions/01:00.0/config`, {
      offset: ctrlAt,
      width: 2,
      value: ctrl & ~SriovCtrl.VFE,
    });
    expect(off.status).toBe(200);
    expect(tdiBdfs(registry)).toEqual(["01:00.0"]);
    expect([...registry.devices.values()][0]!.functions.map((f) => formatRoutingId(f.rid))).toEqual([
      "01:00.0",
    ]);
    const bind = await apiRequest(host.api, "POST", "/v1/tdis/01:00.2/bind", { vm: "vm1" });
    expect(bind).toEqual({ status: 404, body: { error: "no TDI 01:00.2" } });

    // Behind its back, over the device's control wire: NumVFs 2, VF Enable set.
    const control = await ControlClient.connect(device.control, { timeoutMs: 5000 });
    try {
      await control.cfgWrite(PF, sriov + Sriov.NUM_VF, 2, 2);
      await control.cfgWrite(PF, ctrlAt, 2, ctrl | SriovCtrl.VFE);
    } finally {
      control.close();
    }
    // Before acting on a TDI the host checks again: this bind finds 01:00.1 back (and refuses only
    // because its TDEV is not connected).
    const changed = nextEvent(registry, "vfs-changed");
    const again = await apiRequest(host.api, "POST", "/v1/tdis/01:00.1/bind", { vm: "vm1" });
    expect(await changed).toEqual({ event: "vfs-changed", device: device.name, pf: "01:00.0", vfs: 2 });
    expect(again).toMatchObject({ status: 409 });
    expect(tdiBdfs(registry)).toEqual(["01:00.0", "01:00.1", "01:00.2"]);
    // VF 1's BARs are its slice of the VF BARs the host assigned at the scan.
    const [pf, vf0, vf1] = [...registry.devices.values()][0]!.functions;
    const vfBar = pf!.sriov!.vfBars[0]!;
    expect(vf0!.bars[0]!.address).toBe(vfBar.address);
    expect(vf1!.bars[0]!.address).toBe(vfBar.address! + vfBar.size);
  });
});

it("follows a change behind its back on the next probe", async () => {
  await withHostAndDevice(nic, { probeIntervalMs: 100 }, async (host, device) => {
    const { registry } = host;
    const sriov = [...registry.devices.values()][0]!.functions[0]!.sriov!.offset;
    const ctrl = device.model.configRead(PF, sriov + Sriov.CTRL, 2);
    device.model.configWrite(PF, sriov + Sriov.CTRL, 2, ctrl & ~SriovCtrl.VFE);
    await registryReaches(registry, () => registry.tdis.size === 1);
    expect(tdiBdfs(registry)).toEqual(["01:00.0"]);
  });
});
