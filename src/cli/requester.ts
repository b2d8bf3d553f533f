/**
 * `doe-emu requester`: authenticate a DOE mailbox endpoint the way DMTF's spdm_requester_emu does
 * (VCA, GET_DIGESTS, GET_CERTIFICATE, CHALLENGE, GET_MEASUREMENTS), verifying every answer. Flags
 * carry spdm-emu's names and values (uppercase, comma-separated lists) where the meaning matches.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Argv } from "yargs";
import {
  AeadCipherSuite,
  BaseAsymAlgo,
  BaseHashAlgo,
  RequesterCapability as Cap,
  DheNamedGroup,
  KeyScheduleAlgo,
  MeasurementHashAlgo,
  MeasurementSpecification,
  MeasurementSummaryHashType,
  OtherParams,
} from "../../protocol/spdm/codes.js";
import { formatEndpoint } from "../net/framed.js";
import { REQUESTER_DEFAULTS, type RequesterSummary, type SpdmRequesterOptions } from "../spdm/requester.js";
import { type ExeMode, type RunRequesterOptions, runRequester } from "../spdm/requester-transport.js";
import { run } from "./common.js";

type Names = Readonly<Record<string, number>>;

/** spdm-emu's requester capability names (spdm_emu.c), which drop the _CAP suffix. */
const CAP_NAMES: Names = {
  CERT: Cap.CERT_CAP,
  CHAL: Cap.CHAL_CAP,
  ENCRYPT: Cap.ENCRYPT_CAP,
  MAC: Cap.MAC_CAP,
  MUT_AUTH: Cap.MUT_AUTH_CAP,
  KEY_EX: Cap.KEY_EX_CAP,
  PSK: Cap.PSK_CAP,
  ENCAP: Cap.ENCAP_CAP,
  HBEAT: Cap.HBEAT_CAP,
  KEY_UPD: Cap.KEY_UPD_CAP,
  HANDSHAKE_IN_CLEAR: Cap.HANDSHAKE_IN_THE_CLEAR_CAP,
  PUB_KEY_ID: Cap.PUB_KEY_ID_CAP,
  CHUNK: Cap.CHUNK_CAP,
  EP_INFO_NO_SIG: Cap.EP_INFO_CAP_NO_SIG,
  EP_INFO_SIG: Cap.EP_INFO_CAP_SIG,
  EVENT: Cap.EVENT_CAP,
  MULTI_KEY_ONLY: Cap.MULTI_KEY_CAP_ONLY,
  MULTI_KEY_NEG: Cap.MULTI_KEY_CAP_NEG,
  LARGE_RESP: Cap.LARGE_RESP_CAP,
};
const VERSION_NAMES: Names = { "1.0": 0x10, "1.1": 0x11, "1.2": 0x12, "1.3": 0x13 };
const { RAW_BIT_STREAM_ONLY, ...MEAS_HASHES } = MeasurementHashAlgo;
const { SM4_GCM, ...AEADS } = AeadCipherSuite;

/** Each list flag: its option key, the names it takes, what it sets, and its help. */
const LIST_FLAGS: readonly { flag: string; names: Names; key: keyof SpdmRequesterOptions; help: string }[] = [
  {
    flag: "ver",
    names: VERSION_NAMES,
    key: "versions",
    help: "SPDM versions offered; the highest common one is used",
  },
  {
    flag: "cap",
    names: CAP_NAMES,
    key: "capabilities",
    help: "Requester capability flags (GET_CAPABILITIES)",
  },
  { flag: "hash", names: BaseHashAlgo, key: "baseHashAlgo", help: "BaseHashAlgo offered" },
  {
    flag: "asym",
    names: BaseAsymAlgo,
    key: "baseAsymAlgo",
    help: "BaseAsymAlgo offered (responder signing)",
  },
  {
    flag: "meas_spec",
    names: MeasurementSpecification,
    key: "measurementSpecification",
    help: "MeasurementSpecification offered",
  },
  {
    flag: "meas_hash",
    names: { RAW_BIT: RAW_BIT_STREAM_ONLY, ...MEAS_HASHES },
    key: "measurementHashAlgo",
    help: "MeasurementHashAlgo accepted (the responder picks one; anything else fails)",
  },
  { flag: "dhe", names: { NONE: 0, ...DheNamedGroup }, key: "dheNamedGroup", help: "DHE groups offered" },
  {
    flag: "aead",
    names: { ...AEADS, SM4_128_GCM: SM4_GCM },
    key: "aeadCipherSuite",
    help: "AEAD suites offered",
  },
  {
    flag: "req_asym",
    names: { NONE: 0, ...BaseAsymAlgo },
    key: "reqBaseAsymAlg",
    help: "ReqBaseAsymAlg offered",
  },
  {
    flag: "key_schedule",
    names: { HMAC_HASH: KeyScheduleAlgo.SPDM },
    key: "keySchedule",
    help: "KeySchedule offered",
  },
  {
    flag: "other_param",
    names: { OPAQUE_FMT_1: OtherParams.OPAQUE_DATA_FMT_1, MULTI_KEY_CONN: OtherParams.MULTI_KEY_CONN },
    key: "otherParamsSupport",
    help: "OtherParamsSupport (1.2+)",
  },
];

/** Names of the bits set in `value`, for the --help defaults. */
const namesOf = (names: Names, value: number) =>
  Object.entries(names)
    .filter(([, v]) => v !== 0 && (value & v) === v)
    .map(([k]) => k)
    .join(",");

function parseList(flag: string, names: Names, text: string): number[] {
  return text.split(",").map((part) => {
    const v = names[part.trim()];
    if (v === undefined) throw new Error(`--${flag} ${part}: not one of ${Object.keys(names).join(", ")}`);
    return v;
  });
}

const SUMMARY_TYPES = {
  NO: MeasurementSummaryHashType.None,
  TCB: MeasurementSummaryHashType.Tcb,
  ALL: MeasurementSummaryHashType.All,
};

interface RequesterArgs {
  trans: string;
  ip: string;
  port: number;
  "trust-root"?: string;
  timeout: number;
  slot_id: number;
  meas_sum: keyof typeof SUMMARY_TYPES;
  meas_op: "ONE_BY_ONE" | "ALL";
  exe_mode: ExeMode;
  json: boolean;
  [flag: string]: unknown;
}

function readTrustRoot(file: string): Buffer {
  const data = readFileSync(file);
  try {
    return new X509Certificate(data).raw;
  } catch {
    throw new Error(`--trust-root ${file}: not a DER or PEM certificate`);
  }
}

function options(argv: RequesterArgs): RunRequesterOptions {
  if (argv.trans !== "PCI_DOE") throw new Error(`--trans ${argv.trans}: only PCI_DOE is supported`);
  const opts: RunRequesterOptions = {
    slotId: argv.slot_id,
    measurementSummaryHashType: SUMMARY_TYPES[argv.meas_sum],
    measurementMode: argv.meas_op,
    timeoutMs: argv.timeout,
    exeMode: argv.exe_mode,
    trustRoot: argv["trust-root"] === undefined ? undefined : readTrustRoot(argv["trust-root"]),
  };
  for (const { flag, names, key } of LIST_FLAGS) {
    const text = argv[flag];
    if (typeof text !== "string") continue;
    const values = parseList(flag, names, text);
    Object.assign(opts, { [key]: key === "versions" ? values : values.reduce((a, b) => a | b, 0) });
  }
  return opts;
}

function formatSummary(s: RequesterSummary, where: string): string {
  const c = s.certificateChain;
  const t = s.timingsMs;
  const lines = [
    `SPDM ${s.version} with ${where}: authenticated, ${s.exchanges} exchanges in ${t.total} ms`,
    `  algorithms: ${Object.entries(s.algorithms)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
    `  requester capabilities: ${s.requesterCapabilities.join(" ")}`,
    `  responder capabilities: ${s.responderCapabilities.join(" ")}`,
    `  slot ${s.slot} of ${s.provisionedSlots.join(",")}: ${c.certificates} certificates, ${c.bytes}-byte chain; root ${c.rootSubject}`,
    c.trustAnchor === undefined
      ? "  trust anchor: NOT CHECKED (no --trust-root): the chain is only consistent in itself, its root is not trusted"
      : `  trust anchor: verified against --trust-root (${c.trustAnchor})`,
    `  leaf: ${c.leafSubject}`,
    `  leaf digest (${s.algorithms["BaseHash"]}): ${c.leafDigest}`,
    ...s.otherSlots.map((o) => `  slot ${o.slot} chain verified too; leaf ${o.leafSubject}`),
    `  CHALLENGE_AUTH: signature verified; measurement summary hash ${s.challenge.measurementSummaryHashType}` +
      (s.challenge.measurementSummaryHash === undefined ? "" : ` ${s.challenge.measurementSummaryHash}`) +
      (s.challenge.summaryHashChecked ? " (matches the measurements)" : ""),
  ];
  const m = s.measurements;
  if (m.mode === "NONE") lines.push(`  measurements: none (${m.reason})`);
  else {
    lines.push(
      `  measurements (${m.mode}, ${m.signed ? "signature verified" : "UNSIGNED: responder has MEAS_CAP_NO_SIG"}):`,
    );
    for (const b of m.blocks) lines.push(`    [${b.index}] ${b.type} ${b.form} ${b.value}`);
  }
  lines.push(
    `  timings (ms): VCA ${t.vca}, certificates ${t.certificates}, challenge ${t.challenge}, measurements ${t.measurements}`,
  );
  return lines.join("\n");
}

async function runRequesterCommand(argv: RequesterArgs): Promise<void> {
  const endpoint = { host: argv.ip, port: argv.port };
  const summary = await runRequester(endpoint, options(argv));
  console.log(
    argv.json
      ? JSON.stringify(summary, null, 2)
      : formatSummary(summary, `${formatEndpoint(endpoint)} (PCI_DOE)`),
  );
}

export const requesterCommand = {
  command: "requester",
  describe:
    "Authenticate a DOE mailbox endpoint as DMTF's spdm_requester_emu does, verifying certificates, signatures and measurements",
  builder: (y: Argv) => {
    let b = y
      .option("trans", {
        type: "string",
        default: "PCI_DOE",
        describe: "Transport; only PCI_DOE (DOE data objects on the spdm-emu socket)",
      })
      .option("ip", { type: "string", default: "127.0.0.1", describe: "Responder address" })
      .option("port", { type: "number", default: 2323, describe: "Responder port" })
      .option("trust-root", {
        type: "string",
        describe: "Root certificate (DER or PEM) the chain must end in; without it the root is not checked",
      })
      .option("timeout", { type: "number", default: 1000, describe: "Per-request timeout in ms" })
      .option("slot_id", {
        type: "number",
        default: 0,
        describe: "Certificate slot challenged and used for measurements (0-7)",
      })
      .option("meas_sum", {
        choices: ["NO", "TCB", "ALL"] as const,
        default: "ALL" as const,
        describe: "MeasurementSummaryHashType in CHALLENGE (ALL is checked against the measurements)",
      })
      .option("meas_op", {
        choices: ["ONE_BY_ONE", "ALL"] as const,
        default: "ONE_BY_ONE" as const,
        describe:
          "GET_MEASUREMENTS: count, then one index at a time as spdm-emu (signing the last), or all at once (signed)",
      })
      .option("exe_mode", {
        choices: ["SHUTDOWN", "CONTINUE"] as const,
        default: "SHUTDOWN" as const,
        describe: "End with SHUTDOWN (the responder exits) or CONTINUE (it waits for the next requester)",
      })
      .option("json", { type: "boolean", default: false, describe: "Print the summary as JSON" });
    for (const { flag, names, key, help } of LIST_FLAGS) {
      const dflt = REQUESTER_DEFAULTS[key as keyof typeof REQUESTER_DEFAULTS];
      const shown = Array.isArray(dflt)
        ? dflt.map((v) => Object.keys(names).find((k) => names[k] === v) ?? String(v)).join(",")
        : namesOf(names, dflt as number);
      b = b.option(flag, {
        type: "string",
        describe: `${help}; comma-separated, from ${Object.keys(names).join("|")} (default ${shown || "none"})`,
      });
    }
    return b
      .example("$0 requester --port 2323 --trust-root ecp384/ca.cert.der", "authenticate spdm_responder_emu")
      .example(
        "$0 requester --ver 1.2 --asym ECDSA_P256 --hash SHA_256 --trust-root ecp256/ca.cert.der",
        "P-256 / SHA-256 at SPDM 1.2",
      );
  },
  handler: run(runRequesterCommand),
};
