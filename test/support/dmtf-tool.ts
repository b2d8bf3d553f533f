/** Running DMTF's programs (spdm-emu's build/bin in SPDM_EMU_BIN) from the interop tests. */
import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { SPDM_EMU_BIN } from "../../src/fixture/spdm-emu-responder.js";

/** A path inside SPDM_EMU_BIN (an absolute path stays as it is). */
export const bin = (path: string) => resolve(SPDM_EMU_BIN ?? "", path);

/** Our device's slot 0 as DMTF's sample responder chain and key of `dir` (what its SET_CERT installs). */
export const slot0 = (dir = "ecp384") => [
  ...["--cert-chain", bin(`${dir}/bundle_responder.certchain.der`)],
  ...["--private-key", bin(`${dir}/end_responder.key`)],
];

/** spdm_responder_emu's default capabilities (spdm-emu 85436d53 key.c) and `extra`, for its --cap. */
export const responderCaps = (...extra: string[]) =>
  [
    "CACHE,CERT,CHAL,MEAS_SIG,MEL,MEAS_FRESH,ENCRYPT,MAC,MUT_AUTH,KEY_EX,PSK_WITH_CONTEXT,ENCAP,HBEAT",
    "KEY_UPD,HANDSHAKE_IN_CLEAR,CHUNK,SET_CERT,CSR,MULTI_KEY_NEG,GET_KEY_PAIR_INFO",
    "SET_KEY_PAIR_INFO,EP_INFO_SIG,LARGE_RESP",
    ...extra,
  ].join(",");

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

/**
 * SPDM_EMU_BIN's entries linked into a new directory, for a spdm_responder_emu whose sample device
 * writes files there (pending requests of CERT_INSTALL_RESET_CAP and SET_KEY_PAIR_RESET_CAP): the
 * files it rewrites copied, and the seven `cached_last_csr_N_request` empty (a free CSRTrackingTag;
 * when they are missing it answers GET_CSR Busy).
 */
export function emuCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), "doe-emu-spdm-emu-"));
  for (const name of readdirSync(bin(".")))
    if (name.startsWith("slot_id_")) copyFileSync(bin(name), join(dir, name));
    else symlinkSync(bin(name), join(dir, name));
  for (let tag = 1; tag <= 7; tag++) writeFileSync(join(dir, `cached_last_csr_${tag}_request`), "");
  return dir;
}
