/** Running DMTF's programs (spdm-emu's build/bin in SPDM_EMU_BIN) from the interop tests. */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { SPDM_EMU_BIN } from "../../src/fixture/spdm-emu-responder.js";

/** A path inside SPDM_EMU_BIN (an absolute path stays as it is). */
export const bin = (path: string) => resolve(SPDM_EMU_BIN ?? "", path);

/**
 * Runs `tool` (a name in SPDM_EMU_BIN or a path) to its end, stdout and stderr as one text; killed
 * after 60 s. The default working directory is SPDM_EMU_BIN: DMTF's programs find their sample keys
 * relative to it.
 */
export function runTool(
  tool: string,
  args: string[],
  cwd = bin("."),
): Promise<{ code: number | null; output: string }> {
  return new Promise((done, fail) => {
    const child = spawn(bin(tool), args, { cwd });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("error", fail);
    child.once("exit", (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}
