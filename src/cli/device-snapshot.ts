/** The device's startup snapshot entry (dist/device.blob): see snapshot.ts. */
import { defaultDescription } from "../device/description.js";
import { deviceCommand, warmDevice } from "./device.js";
import { snapshotMain } from "./snapshot.js";

// Validated now, at build time: the snapshot holds the default device and zod's compiled checks.
defaultDescription();
// As spawnCli starts a device, but on any free ports and silent.
snapshotMain(deviceCommand, {
  args: ["device", "--port", "0", "--log-level", "silent"],
  handler: warmDevice,
});
