/**
 * What a V8 startup snapshot entry (device-snapshot.ts, host-snapshot.ts; built by tools/bundle.mjs)
 * runs: the command's modules are evaluated once at build time, so a process started from the
 * snapshot (`node --snapshot-blob dist/NAME.blob NAME ARGS`, what spawnCli does) skips compiling and
 * evaluating them. Only the commands started by the dozen (launcher, fixture, benchmarks) have one.
 */
import v8 from "node:v8";
import { type Command, runCli } from "./cli.js";

/** A build-time run of the command: `args` parsed as ever, then `handler` instead of the command's. */
export interface WarmUp {
  args: string[];
  handler: Command["handler"];
}

export function snapshotMain(command: Command, warm?: WarmUp): void {
  // The snapshot keeps the bytecode of every function that has run by then, and node runs the event
  // loop dry before taking it: what the warm-up ran, a process started from it does not compile.
  if (warm) void runCli(warm.args, [{ ...command, handler: warm.handler }]);
  // Started from a snapshot, the first argument after node's own is process.argv[1].
  v8.startupSnapshot.setDeserializeMainFunction(() => void runCli(process.argv.slice(1), [command]));
}
