/**
 * Placeholder for the SPDM responder: every CMA/SPDM and secured CMA/SPDM request is answered with
 * SPDM ERROR UnsupportedRequest until the responder fills these handlers in.
 */
import { SpdmCode, SpdmErrorCode } from "../../protocol/spdm/codes.js";
import type { DoeHandler } from "./mailbox.js";

export const unsupportedSpdm: DoeHandler = (req) => {
  const version = req.payload.length >= 1 ? req.payload[0]! : 0x10;
  const code = req.payload.length >= 2 ? req.payload[1]! : 0;
  return Buffer.from([version, SpdmCode.ERROR, SpdmErrorCode.UnsupportedRequest, code]);
};
