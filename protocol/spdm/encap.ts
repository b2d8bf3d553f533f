/**
 * The encapsulated-request messages (DSP0274 1.1–1.3 "Encapsulated request flow"): the responder
 * sends its own requests (GET_DIGESTS, GET_CERTIFICATE, CHALLENGE, KEY_UPDATE) inside responses to
 * the requester, which answers them inside requests. The carried message is kept as bytes; it is
 * an SPDM message of its own, decoded by whoever handles it.
 */
import type { MessageOf } from "./messages.js";
import { type Field, type Need, schema } from "./schema.js";

interface Msg<C extends string> {
  code: C;
  version: number;
}

export interface GetEncapsulatedRequest extends Msg<"GET_ENCAPSULATED_REQUEST"> {}

export interface EncapsulatedRequest extends Msg<"ENCAPSULATED_REQUEST"> {
  /** Param1: RequestID, echoed by DELIVER_ENCAPSULATED_RESPONSE. */
  requestId: number;
  /** The responder's request to the requester (a whole SPDM message). */
  encapsulatedRequest: Buffer;
}

export interface DeliverEncapsulatedResponse extends Msg<"DELIVER_ENCAPSULATED_RESPONSE"> {
  /** Param1: the RequestID of the request this answers. */
  requestId: number;
  encapsulatedResponse: Buffer;
}

/** ENCAPSULATED_RESPONSE_ACK Param2 (EncapsulatedResponseAckPayloadType). */
export const EncapPayloadType = { ABSENT: 0, PRESENT: 1, REQ_SLOT_NUMBER: 2 } as const;

export interface EncapsulatedResponseAck extends Msg<"ENCAPSULATED_RESPONSE_ACK"> {
  /** Param1: RequestID of the next encapsulated request (when PRESENT), else reserved. */
  requestId: number;
  /** Param2: EncapPayloadType. */
  payloadType: number;
  /** 1.2+: the RequestID of the DELIVER_ENCAPSULATED_RESPONSE acknowledged. */
  ackRequestId?: number;
  /** The next request (PRESENT), the requester's slot (REQ_SLOT_NUMBER, one byte) or nothing. */
  payload: Buffer;
}

export type EncapMessage =
  | GetEncapsulatedRequest
  | EncapsulatedRequest
  | DeliverEncapsulatedResponse
  | EncapsulatedResponseAck;

type EncapName = EncapMessage["code"];
/** The carried message runs to the end of the buffer (DOE padding included; its own decoder cuts that). */
const rest = (_m: unknown, n: Need) => n.r.remaining;

export const ENCAP_SCHEMAS: { [K in EncapName]: readonly Field<MessageOf<K>>[] } = {
  GET_ENCAPSULATED_REQUEST: schema<MessageOf<"GET_ENCAPSULATED_REQUEST">>((f) => [f.reserved(2)]),
  ENCAPSULATED_REQUEST: schema<MessageOf<"ENCAPSULATED_REQUEST">>((f) => [
    f.u8("requestId"),
    f.reserved(1),
    f.bytes("encapsulatedRequest", rest),
  ]),
  DELIVER_ENCAPSULATED_RESPONSE: schema<MessageOf<"DELIVER_ENCAPSULATED_RESPONSE">>((f) => [
    f.u8("requestId"),
    f.reserved(1),
    f.bytes("encapsulatedResponse", rest),
  ]),
  ENCAPSULATED_RESPONSE_ACK: schema<MessageOf<"ENCAPSULATED_RESPONSE_ACK">>((f) => [
    f.u8("requestId"),
    f.u8("payloadType"),
    f.when((m) => m.version >= 0x12, f.u8("ackRequestId"), f.reserved(3)),
    f.bytes("payload", rest),
  ]),
};
