/** The device's startup snapshot entry (dist/device.blob): see snapshot.ts. */
import { defaultDescription } from "../device/description.js";
import { deviceCommand } from "./device.js";
import { snapshotMain } from "./snapshot.js";

// Validated now, at build time: the snapshot holds the default device and zod's compiled checks.
defaultDescription();
snapshotMain(deviceCommand);
