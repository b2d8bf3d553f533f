/**
 * What an SpdmRequester is configured with: the options, spdm-emu's defaults for them, and the
 * checks that refuse a configuration before anything is sent.
 */
import { type KeyObject, randomBytes } from "node:crypto";
import {
  AeadCipherSuite,
  BaseAsymAlgo,
  BaseHashAlgo,
  bitNames,
  DheNamedGroup,
  KeyScheduleAlgo,
  MeasurementHashAlgo,
  MeasurementSpecification,
  MeasurementSummaryHashType,
  OtherParams,
  ReqBaseAsymAlg,
  RequesterCapability,
} from "../../protocol/spdm/codes.js";
import { maskOf } from "../bits.js";
import { ASYM, type AsymAlgo, HASH, keyFits } from "../crypto/suites.js";
import { PUBLIC_KEY_SLOT, REQUESTER_CERTIFICATE_CAPABILITIES } from "./public-key.js";
import type { ProvisionStep } from "./requester-provision.js";
import type { KeyLog } from "./session.js";

/** spdm-emu's --exe_conn steps after VCA, which always runs. */
export const CONNECTION_STEPS = ["DIGEST", "CERT", "CHAL", "MEAS"] as const;
export type ConnectionStep = (typeof CONNECTION_STEPS)[number];
/** The step each one builds on: CERT checks chains against DIGESTS, CHAL signs over the chain. */
const STEP_NEEDS: Record<ConnectionStep, ConnectionStep | undefined> = {
  DIGEST: undefined,
  CERT: "DIGEST",
  CHAL: "CERT",
  MEAS: undefined,
};

export type MeasurementMode = "ONE_BY_ONE" | "ALL";

export interface SpdmRequesterOptions {
  /** SPDMVersion bytes offered; the highest one VERSION also lists is used. Default 1.0–1.4. */
  versions?: readonly number[];
  /** GET_CAPABILITIES Flags (RequesterCapability); bits the negotiated version lacks are dropped. */
  capabilities?: number;
  ctExponent?: number;
  dataTransferSize?: number;
  maxSpdmMsgSize?: number;
  baseHashAlgo?: number;
  baseAsymAlgo?: number;
  measurementSpecification?: number;
  /**
   * MeasurementHashAlgo bits we accept. NEGOTIATE_ALGORITHMS has no such field (the responder picks),
   * so this is checked against ALGORITHMS, as spdm-emu's --meas_hash is a local setting.
   */
  measurementHashAlgo?: number;
  dheNamedGroup?: number;
  aeadCipherSuite?: number;
  reqBaseAsymAlg?: number;
  keySchedule?: number;
  otherParamsSupport?: number;
  melSpecification?: number;
  /** Slot challenged and used for measurements (0–7; 0xFF with responderPublicKey). */
  slotId?: number;
  /**
   * The responder's public key, provisioned out of band (its PUB_KEY_ID_CAP, spdm-emu's
   * `--slot_id 0xFF`): slot 0xFF, so no GET_DIGESTS / GET_CERTIFICATE, and CHALLENGE_AUTH,
   * MEASUREMENTS and KEY_EXCHANGE_RSP verified with this key (public-key.ts).
   */
  responderPublicKey?: KeyObject;
  /** More slots whose chains are fetched and verified before CHALLENGE (spdm-emu fetches its highest other slot). */
  extraSlots?: readonly number[];
  /** CHALLENGE Param2: MeasurementSummaryHashType (spdm-emu default ALL). */
  measurementSummaryHashType?: number;
  /** spdm-emu --meas_op: ONE_BY_ONE (its default) or ALL. */
  measurementMode?: MeasurementMode;
  /**
   * GET_CERTIFICATE Length per request; libspdm 1e16c60f asks 0xFFFF (the responder caps it), older
   * requesters 1024.
   */
  certPortionLength?: number;
  /** DER of the root certificate the chain must end in; without it only the chain's own consistency is checked. */
  trustRoot?: Uint8Array;
  /** Source of nonces and RequesterContexts (nonce first, then context, per request). */
  randomBytes?: (size: number) => Buffer;
  /** Re-sends after ERROR Busy, the first busyDelayMs later, each further one after twice the pause before. */
  busyRetries?: number;
  busyDelayMs?: number;
  /** RESPOND_IF_READY rounds after ERROR ResponseNotReady, and the longest wait honoured per round. */
  notReadyRetries?: number;
  maxNotReadyWaitMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** Time certificate validity is checked at; default now. */
  now?: () => Date;
  /**
   * The steps a run does after VCA (spdm-emu --exe_conn; src/requester sequences them); VCA checks
   * that the responder has the capabilities they need.
   */
  connectionSteps?: readonly ConnectionStep[];
  /**
   * Our identity for mutual authentication (KEY_EXCHANGE_RSP MutAuthRequested, CHALLENGE_AUTH
   * BasicMutAuthReq; the responder's encapsulated GET_DIGESTS, GET_CERTIFICATE and CHALLENGE are
   * answered from it): DER certificates, root first, and the leaf's private key. Given both,
   * MUT_AUTH_CAP, ENCAP_CAP and EP_INFO_CAP_SIG (the responder's encapsulated GET_ENDPOINT_INFO,
   * answered signed) are offered, and ReqBaseAsymAlg defaults to the algorithms the key fits.
   */
  requesterCertChain?: readonly Uint8Array[];
  requesterKey?: KeyObject;
  /**
   * Our public key is provisioned at the responder instead (spdm-emu's `--req_slot_id 0xFF`):
   * requesterKey without a chain; PUB_KEY_ID_CAP and MUT_AUTH_CAP are offered instead of CERT_CAP,
   * multi-key and ENCAP_CAP, and FINISH is signed for requester slot 0xFF.
   */
  requesterPublicKey?: boolean;
  /** Where each established session's secret goes (`--keylog`). */
  keyLog?: KeyLog;
  /**
   * Provisioning and inventory requests after the connection steps (spdm-emu's --exe_conn MEL,
   * EP_INFO, GET_KEY_PAIR_INFO, SET_KEY_PAIR_INFO, GET_CSR, SET_CERT; requester-provision.ts).
   */
  provisionSteps?: readonly ProvisionStep[];
  /** The chain SET_CERT installs (DER certificates, root first) and its slot; default the slot's own chain. */
  setCertificate?: { slot: number; certsDer: readonly Buffer[] };
  /** GET_CSR's CSRTrackingTag (1.3+): retrieve the CSR a device's reset completed (default 0: a new request). */
  csrTrackingTag?: number;
}

/**
 * spdm-emu's requester defaults (spdm_emu_common/key.c), except: capabilities (what we implement:
 * MULTI_KEY_CAP only when asked for; MUT_AUTH_CAP and ENCAP_CAP only with a requester chain and
 * key, see SpdmRequesterOptions) and the 1024-byte certificate portions.
 */
export const REQUESTER_DEFAULTS = {
  versions: [0x10, 0x11, 0x12, 0x13, 0x14],
  // Unsigned: bit 31 is LARGE_RESP_CAP.
  capabilities:
    (RequesterCapability.CERT_CAP |
      RequesterCapability.CHAL_CAP |
      RequesterCapability.CHUNK_CAP |
      RequesterCapability.ENCRYPT_CAP |
      RequesterCapability.MAC_CAP |
      RequesterCapability.KEY_EX_CAP |
      RequesterCapability.PSK_CAP |
      RequesterCapability.HBEAT_CAP |
      RequesterCapability.KEY_UPD_CAP |
      RequesterCapability.HANDSHAKE_IN_THE_CLEAR_CAP |
      RequesterCapability.LARGE_RESP_CAP) >>>
    0,
  ctExponent: 0,
  dataTransferSize: 0x1200,
  maxSpdmMsgSize: 0x28000,
  baseHashAlgo: BaseHashAlgo.SHA_384 | BaseHashAlgo.SHA_256,
  baseAsymAlgo: BaseAsymAlgo.ECDSA_P384 | BaseAsymAlgo.ECDSA_P256,
  measurementSpecification: MeasurementSpecification.DMTF,
  measurementHashAlgo:
    MeasurementHashAlgo.SHA_512 | MeasurementHashAlgo.SHA_384 | MeasurementHashAlgo.SHA_256,
  dheNamedGroup:
    DheNamedGroup.SECP_384_R1 |
    DheNamedGroup.SECP_256_R1 |
    DheNamedGroup.FFDHE_3072 |
    DheNamedGroup.FFDHE_2048,
  aeadCipherSuite: AeadCipherSuite.AES_256_GCM | AeadCipherSuite.CHACHA20_POLY1305,
  reqBaseAsymAlg:
    ReqBaseAsymAlg.RSAPSS_3072 |
    ReqBaseAsymAlg.RSAPSS_2048 |
    ReqBaseAsymAlg.RSASSA_3072 |
    ReqBaseAsymAlg.RSASSA_2048,
  keySchedule: KeyScheduleAlgo.SPDM,
  otherParamsSupport: OtherParams.OPAQUE_DATA_FMT_1 | OtherParams.MULTI_KEY_CONN,
  melSpecification: 0x01,
  slotId: 0,
  extraSlots: [] as readonly number[],
  measurementSummaryHashType: MeasurementSummaryHashType.All,
  measurementMode: "ONE_BY_ONE" as MeasurementMode,
  certPortionLength: 1024,
  busyRetries: 3,
  busyDelayMs: 100,
  notReadyRetries: 3,
  maxNotReadyWaitMs: 10_000,
  connectionSteps: CONNECTION_STEPS as readonly ConnectionStep[],
  provisionSteps: [] as readonly ProvisionStep[],
} satisfies Omit<
  SpdmRequesterOptions,
  | "trustRoot"
  | "randomBytes"
  | "sleep"
  | "now"
  | "requesterCertChain"
  | "requesterKey"
  | "requesterPublicKey"
  | "responderPublicKey"
  | "keyLog"
  | "setCertificate"
  | "csrTrackingTag"
>;

type OptionalOption =
  | "trustRoot"
  | "now"
  | "requesterCertChain"
  | "requesterKey"
  | "requesterPublicKey"
  | "responderPublicKey"
  | "keyLog"
  | "setCertificate"
  | "csrTrackingTag";
/** The options with every default filled in. */
export type ResolvedOptions = Required<Omit<SpdmRequesterOptions, OptionalOption>> &
  Pick<SpdmRequesterOptions, OptionalOption>;

type Names = Readonly<Record<string, number>>;
const SUPPORTED_HASH_BITS = maskOf(Object.values(HASH).map((h) => h.bit));
const SUPPORTED_ASYM_BITS = maskOf(Object.values(ASYM).map((a) => a.bit));

/** `o` without its undefined entries, so that they do not hide defaults when spread over them. */
export function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The options over the defaults; a RangeError for a configuration no run could succeed with. */
export function resolveOptions(options: SpdmRequesterOptions): ResolvedOptions {
  const o: ResolvedOptions = {
    randomBytes,
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    ...REQUESTER_DEFAULTS,
    ...definedOnly(options),
    ...mutualAuthOffer(options),
    ...(options.responderPublicKey && { slotId: PUBLIC_KEY_SLOT }),
  };
  const { baseHashAlgo, baseAsymAlgo, slotId, extraSlots, certPortionLength } = o;
  // Offer only what suites.ts can verify.
  const offers: [string, Names, number, number][] = [
    ["BaseHashAlgo", BaseHashAlgo, baseHashAlgo, SUPPORTED_HASH_BITS],
    ["BaseAsymAlgo", BaseAsymAlgo, baseAsymAlgo, SUPPORTED_ASYM_BITS],
  ];
  for (const [field, names, offered, supported] of offers) {
    if (offered === 0 || (offered & ~supported) !== 0)
      throw new RangeError(
        `${field} ${bitNames(names, offered & ~supported).join(",") || "(none)"} is not supported; choose from ${bitNames(names, supported).join(",")}`,
      );
  }
  if (options.slotId === PUBLIC_KEY_SLOT && !o.responderPublicKey)
    throw new RangeError("slot 0xFF needs the responder's public key");
  if (o.responderPublicKey && options.slotId !== undefined && options.slotId !== PUBLIC_KEY_SLOT)
    throw new RangeError(`the responder's public key is slot 0xFF, not slot ${options.slotId}`);
  for (const s of [...(o.responderPublicKey ? [] : [slotId]), ...extraSlots])
    if (!Number.isInteger(s) || s < 0 || s > 7) throw new RangeError(`slot ${s} is not 0–7`);
  if (!(certPortionLength >= 1 && certPortionLength <= 0xffff))
    throw new RangeError(`certificate portion length ${certPortionLength} is not 1–65535`);
  for (const step of o.connectionSteps) {
    const need = STEP_NEEDS[step];
    // Slot 0xFF: the provisioned key stands in for DIGEST and CERT.
    if (need && !o.connectionSteps.includes(need) && !o.responderPublicKey)
      throw new RangeError(`connection step ${step} needs ${need}`);
  }
  return o;
}

/**
 * With a requester chain and key: MUT_AUTH_CAP and ENCAP_CAP added to the capabilities, and ReqBaseAsymAlg (unless
 * given) every algorithm the key fits; an offer the key cannot sign with is refused here.
 */
function mutualAuthOffer(o: SpdmRequesterOptions): Partial<SpdmRequesterOptions> {
  const { requesterCertChain: chain, requesterKey: key, requesterPublicKey: provisioned } = o;
  if (provisioned) {
    if (!key || chain)
      throw new RangeError("a provisioned requester public key needs the requester key and no chain");
  } else if (!chain !== !key)
    throw new RangeError("mutual authentication needs both the requester chain and its key");
  if (!key) return {};
  if (chain?.length === 0) throw new RangeError("the requester certificate chain is empty");
  const fitting = maskOf(
    (Object.keys(ASYM) as AsymAlgo[]).filter((a) => keyFits(a, key)).map((a) => ASYM[a].bit),
  );
  const reqBaseAsymAlg = o.reqBaseAsymAlg ?? fitting;
  if ((reqBaseAsymAlg & fitting) === 0)
    throw new RangeError(
      `ReqBaseAsymAlg ${bitNames(ReqBaseAsymAlg, reqBaseAsymAlg).join(",") || "(none)"} has no algorithm the requester key signs with (${bitNames(ReqBaseAsymAlg, fitting).join(",") || "none"})`,
    );
  const capabilities = o.capabilities ?? REQUESTER_DEFAULTS.capabilities;
  // Our public key provisioned (spdm-emu's --req_slot_id 0xFF): PUB_KEY_ID_CAP for the certificate ones.
  const ours = provisioned
    ? (capabilities & ~REQUESTER_CERTIFICATE_CAPABILITIES) | RequesterCapability.PUB_KEY_ID_CAP
    : capabilities | RequesterCapability.EP_INFO_CAP_SIG;
  return {
    // ENCAP_CAP too: a responder may fetch our chain through encapsulated requests first, ask for our
    // endpoint information (signed: EP_INFO_CAP_SIG), which needs encapsulation as well, or (our
    // public key provisioned) CHALLENGE slot 0xFF after CHALLENGE_AUTH.
    capabilities: (ours | RequesterCapability.MUT_AUTH_CAP | RequesterCapability.ENCAP_CAP) >>> 0,
    reqBaseAsymAlg,
  };
}
