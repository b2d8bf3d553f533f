/**
 * What a V8 startup snapshot entry (device-snapshot.ts, host-snapshot.ts; built by tools/bundle.mjs)
 * runs: the command's modules are evaluated once at build time, so a process started from the
 * snapshot (`node --snapshot-blob dist/NAME.blob NAME ARGS`, what spawnCli does) skips compiling and
 * evaluating them. Only the commands started by the dozen (launcher, fixture, benchmarks) have one.
 */
import v8 from "node:v8";
import { type Command, runCli } from "./cli.js";

export function snapshotMain(command: Command): void {
  // Started from a snapshot, the first argument after node's own is process.argv[1].
  v8.startupSnapshot.setDeserializeMainFunction(() => void runCli(process.argv.slice(1), [command]));
}
