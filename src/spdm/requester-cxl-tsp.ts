/**
 * CXL TSP from the requester side (CXL 3.1 §11.5; codec protocol/cxl-tsp.ts), one function per
 * exchange inside an established session, checked as DMTF's requester checks (spdm-emu 85436d53
 * cxl_tsp_requester_lib): every answer must be TSP 1.0 and the expected response; an ERROR_RSP fails
 * with its error name and the step; capabilities and the configuration must be consistent.
 */
import {
  ConfigurationFeature,
  capabilityIssues,
  configurationIssues,
  decodeTsp,
  encodeTsp,
  IB_GRANULARITY_ENTRIES,
  LENGTH_INDEX_UNUSED,
  MAX_SECONDARY_SESSIONS,
  MemoryEncryptionAlgorithm,
  MemoryEncryptionEnable,
  type MemoryRange,
  SECONDARY_SESSION_KEY_BYTES,
  type SetTargetConfiguration,
  TeStateFeature,
  TSP_VERSION_1_0,
  type TspCapabilities,
  TspErrorCode,
  type TspMessage,
  type TspMessageName,
  type TspMessageOf,
  TspState,
  validityFlagsFor,
} from "../../protocol/cxl-tsp.js";
import { nameOf } from "../../protocol/spdm/codes.js";
import { hex } from "../bits.js";
import { fail, type SpdmRequester } from "./requester.js";
import { type Answers, ask as askFor, readPortions } from "./requester-pcisig.js";
import type { SecureSession } from "./session.js";

/** The session the requests go in. */
export interface TspTarget {
  r: SpdmRequester;
  s: SecureSession;
}

/** Report portions asked for, and the largest report accepted, as DMTF's requester (cxl_tsp_common_lib.h). */
export const REPORT_PORTION_BYTES = 0x200;
export const MAX_REPORT_BYTES = 0x1000;
/** The range DMTF's requester moves in and out of the TE state. */
export const DMTF_TE_RANGE: MemoryRange = { startingAddress: 0x10_0000n, length: 0x1_0000n };

type Body<M> = M extends TspMessage ? Omit<M, "version"> : never;

const ANSWERS: Answers<TspMessage> = {
  protocol: "CXL_TSP",
  decode: decodeTsp,
  version: TSP_VERSION_1_0,
  error: (m) => {
    if (m.code !== "ERROR_RSP") return undefined;
    const name = nameOf(TspErrorCode, m.errorCode) ?? hex(m.errorCode);
    return { name, text: `ERROR_RSP ${name} (ErrorData ${hex(m.errorData)})` };
  },
};

function ask<N extends TspMessageName>(
  t: TspTarget,
  request: Body<TspMessage>,
  expected: N,
): Promise<TspMessageOf<N>> {
  const message = encodeTsp({ ...request, version: TSP_VERSION_1_0 } as TspMessage);
  return askFor(t.r, t.s, ANSWERS, message, request.code, expected);
}

export async function tspVersion(t: TspTarget): Promise<number[]> {
  const m = await ask(t, { code: "GET_TARGET_TSP_VERSION" }, "GET_TARGET_TSP_VERSION_RSP");
  if (m.versions.length !== 1 || m.versions[0] !== TSP_VERSION_1_0)
    fail(
      "negotiation",
      `CXL_TSP GET_TARGET_TSP_VERSION: versions ${m.versions.map(hex).join(",")}, not just 1.0`,
    );
  return m.versions;
}

export async function tspCapabilities(t: TspTarget): Promise<TspCapabilities> {
  const {
    code: _,
    version: __,
    ...caps
  } = await ask(t, { code: "GET_TARGET_CAPABILITIES" }, "GET_TARGET_CAPABILITIES_RSP");
  const issues = capabilityIssues(caps);
  if (issues.length) fail("malformed", `CXL_TSP GET_TARGET_CAPABILITIES: ${issues.join("; ")}`);
  return caps;
}

/**
 * DMTF's requester's fixed configuration (spdm_requester_pci_doe.c): AES-XTS-256 encryption, read
 * access control with implicit and explicit in-band TE state changes at 64 bytes, locked firmware
 * update, and key material for `keys.length` secondary sessions.
 */
export function dmtfConfiguration(keys: readonly Buffer[]): Body<SetTargetConfiguration> {
  const T = TeStateFeature;
  return {
    code: "SET_TARGET_CONFIGURATION",
    memoryEncryptionFeaturesEnable: MemoryEncryptionEnable.ENCRYPTION,
    memoryEncryptionAlgorithmSelect: MemoryEncryptionAlgorithm.AES_XTS_256,
    teStateChangeAndAccessControlFeaturesEnable:
      T.READ_ACCESS_CONTROL | T.IMPLICIT_TE_STATE_CHANGE | T.EXPLICIT_IB_TE_STATE_CHANGE,
    explicitOobTeStateGranularity: 0,
    configurationFeaturesEnable: ConfigurationFeature.LOCKED_TARGET_FW_UPDATE,
    ckidBase: 0,
    numberOfCkids: 0,
    explicitIbTeStateGranularityEntries: Array.from({ length: IB_GRANULARITY_ENTRIES }, (_, i) => ({
      granularity: 0n,
      lengthIndex: i === 0 ? 0 : LENGTH_INDEX_UNUSED,
    })),
    configurationValidityFlags: validityFlagsFor(keys.length),
    secondarySessionCkidType: 0,
    secondarySessionPskKeyMaterial: Array.from(
      { length: MAX_SECONDARY_SESSIONS },
      (_, i) => keys[i] ?? Buffer.alloc(SECONDARY_SESSION_KEY_BYTES),
    ),
  };
}

export async function tspSetConfiguration(t: TspTarget, keys: readonly Buffer[]): Promise<void> {
  await ask(t, dmtfConfiguration(keys), "SET_TARGET_CONFIGURATION_RSP");
}

/** GET_TARGET_CONFIGURATION; its CurrentTSPState (at most 2), the configuration checked when `check`. */
export async function tspConfiguration(t: TspTarget, check: boolean): Promise<number> {
  const m = await ask(t, { code: "GET_TARGET_CONFIGURATION" }, "GET_TARGET_CONFIGURATION_RSP");
  if (m.currentTspState > TspState.ERROR)
    fail("malformed", `CXL_TSP GET_TARGET_CONFIGURATION: CurrentTSPState ${m.currentTspState}`);
  const issues = check ? configurationIssues(m) : [];
  if (issues.length) fail("malformed", `CXL_TSP GET_TARGET_CONFIGURATION: ${issues.join("; ")}`);
  return m.currentTspState;
}

/** The configuration report, in portions of 0x200; its bytes and how many portions it took. */
export function tspReport(t: TspTarget): Promise<{ bytes: Buffer; portions: number }> {
  return readPortions(
    (offset, length) =>
      ask(
        t,
        { code: "GET_TARGET_CONFIGURATION_REPORT", offset, length },
        "GET_TARGET_CONFIGURATION_REPORT_RSP",
      ),
    REPORT_PORTION_BYTES,
    MAX_REPORT_BYTES,
    "CXL_TSP GET_TARGET_CONFIGURATION_REPORT",
  );
}

export async function tspLock(t: TspTarget): Promise<void> {
  await ask(t, { code: "LOCK_TARGET_CONFIGURATION" }, "LOCK_TARGET_CONFIGURATION_RSP");
}

export async function tspTeState(t: TspTarget, teState: number, memoryRanges: MemoryRange[]): Promise<void> {
  await ask(t, { code: "SET_TARGET_TE_STATE", teState, memoryRanges }, "SET_TARGET_TE_STATE_RSP");
}
