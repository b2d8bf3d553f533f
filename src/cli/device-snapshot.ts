/**
 * The entry of the device's V8 startup snapshot (dist/device.blob, built by tools/bundle.mjs): the
 * device's modules are evaluated once at build time, so a device process started from the snapshot
 * (`node --snapshot-blob dist/device.blob device ARGS`, what spawnCli does) skips compiling and
 * evaluating them. Only the `device` command: the others are started by hand, not by the dozen.
 */
import v8 from "node:v8";
import { defaultDescription } from "../device/description.js";
import { runCli } from "./cli.js";
import { deviceCommand } from "./device.js";

// Validated now, at build time: the snapshot holds the default device and zod's compiled checks.
defaultDescription();
// Started from a snapshot, the first argument after node's own is process.argv[1].
v8.startupSnapshot.setDeserializeMainFunction(() => void runCli(process.argv.slice(1), [deviceCommand]));
