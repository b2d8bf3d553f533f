/**
 * Large messages (DSP0274 1.2+ CHUNK_SEND / CHUNK_GET, ERROR LargeResponse and ResponseTooLarge):
 * a response larger than one transfer to the requester (already in the transcripts whole) waits
 * here for CHUNK_GET, and a request larger than one of ours is gathered from CHUNK_SEND and then
 * answered as any other.
 */
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  CHUNK_EARLY_ERROR_DETECTED,
  CHUNK_LAST,
  SpdmCode,
  SpdmErrorCode,
  SpdmRequestCode,
  SpdmVersion,
} from "../../protocol/spdm/codes.js";
import type { ChunkGet, ChunkSend } from "../../protocol/spdm/messages.js";
import {
  type Connection,
  check,
  errorMessage,
  MIN_DATA_TRANSFER_SIZE,
  SpdmError,
} from "./responder-context.js";
import type { ResponderConfig } from "./responder-settings.js";

const CHUNK_HEADER = 12;
const LARGE_MESSAGE_SIZE_FIELD = 4;
/** CHUNK_SEND_ACK before its response: ChunkSeqNo is u16 before 1.4, u32 from 1.4. */
const chunkSendAckHeader = (version: number) => (version >= SpdmVersion.V1_4 ? 8 : 6);
/** How many chunks a ChunkSeqNo can number. */
const chunkSeqLimit = (version: number) => (version >= SpdmVersion.V1_4 ? 2 ** 32 : 0x10000);

/** A response waiting to be fetched by CHUNK_GET. */
interface LargeResponse {
  handle: number;
  seq: number;
  message: Buffer;
  sent: number;
}

/** A request arriving by CHUNK_SEND. */
interface LargeRequest {
  handle: number;
  seq: number;
  size: number;
  parts: Buffer[];
  received: number;
}

/** The chunked transfers of one connection: at most one each way. */
export class ChunkTransfers {
  private largeResponse: LargeResponse | undefined;
  private largeRequest: LargeRequest | undefined;
  private lastHandle = 0;

  constructor(
    private readonly connection: Connection,
    private readonly config: ResponderConfig,
  ) {}

  /** The request code that a transfer under way admits (CHUNK_GET or CHUNK_SEND), if one is. */
  get underWay(): number | undefined {
    if (this.largeResponse) return SpdmRequestCode.CHUNK_GET;
    if (this.largeRequest) return SpdmRequestCode.CHUNK_SEND;
    return undefined;
  }

  /** A new connection: transfers under way are abandoned. */
  reset(): void {
    this.largeResponse = undefined;
    this.largeRequest = undefined;
  }

  /**
   * Sizes a response for the requester (1.2+): beyond its MaxSPDMmsgSize → ResponseTooLarge;
   * beyond one transfer with chunking → LargeResponse, the message then goes by CHUNK_GET. A
   * CHUNK_SEND_ACK too large to send loses its ACK part, as with libspdm: only the response to
   * the large request is fetched.
   */
  fit(response: Buffer): Buffer {
    const { peer, chunking, sendLimit } = this.connection;
    const code = response[1];
    if (peer?.maxSpdmMsgSize === undefined || code === SpdmCode.CHUNK_RESPONSE || code === SpdmCode.ERROR)
      return response;
    const large =
      code === SpdmCode.CHUNK_SEND_ACK ? response.subarray(chunkSendAckHeader(peer.version)) : response;
    const chunkable = (sendLimit - CHUNK_HEADER) * chunkSeqLimit(peer.version) - LARGE_MESSAGE_SIZE_FIELD;
    if (large.length > peer.maxSpdmMsgSize || (chunking && large.length > chunkable)) {
      const actualSize = Buffer.alloc(4);
      actualSize.writeUInt32LE(large.length);
      // The codec has no field for ResponseTooLarge's extended data (u32 size, as libspdm sends).
      return Buffer.concat([
        errorMessage(new SpdmError(SpdmErrorCode.ResponseTooLarge), peer.version),
        actualSize,
      ]);
    }
    if (response.length <= sendLimit || !chunking) return response;
    this.lastHandle = (this.lastHandle + 1) & 0xff;
    this.largeResponse = { handle: this.lastHandle, seq: 0, message: Buffer.from(large), sent: 0 };
    return encodeSpdm({
      code: "ERROR",
      version: peer.version,
      errorCode: SpdmErrorCode.LargeResponse,
      errorData: 0,
      largeResponseHandle: this.lastHandle,
    });
  }

  /** CHUNK_GET: the next chunk of the large response. */
  get(m: ChunkGet): Buffer {
    check(this.connection.chunking, "UnexpectedRequest");
    const t = this.largeResponse;
    check(t !== undefined, "UnexpectedRequest");
    check(m.handle === t.handle && m.chunkSeqNo === t.seq);
    const first = t.seq === 0;
    const room = this.connection.sendLimit - CHUNK_HEADER - (first ? LARGE_MESSAGE_SIZE_FIELD : 0);
    const chunk = t.message.subarray(t.sent, t.sent + room);
    t.sent += chunk.length;
    const last = t.sent === t.message.length;
    const response = encodeSpdm({
      code: "CHUNK_RESPONSE",
      version: m.version,
      attributes: last ? CHUNK_LAST : 0,
      handle: t.handle,
      chunkSeqNo: t.seq,
      largeMessageSize: first ? t.message.length : undefined,
      chunk,
    });
    t.seq++;
    if (last) this.largeResponse = undefined;
    return response;
  }

  /**
   * CHUNK_SEND: one chunk taken; after the last, the ACK carries the response that `respond` gives
   * to the whole request.
   */
  async send(m: ChunkSend, request: Buffer, respond: (whole: Buffer) => Promise<Buffer>): Promise<Buffer> {
    check(this.connection.chunking, "UnexpectedRequest");
    const ack = (attributes: number, response?: Buffer) =>
      encodeSpdm({
        code: "CHUNK_SEND_ACK",
        version: m.version,
        attributes,
        handle: m.handle,
        chunkSeqNo: m.chunkSeqNo,
        response,
      });
    let whole: Buffer | undefined;
    try {
      whole = this.accept(m, request.length);
    } catch (e) {
      if (!(e instanceof SpdmError)) throw e;
      // The transfer ends; the ERROR rides in the ACK.
      this.largeRequest = undefined;
      return ack(CHUNK_EARLY_ERROR_DETECTED, errorMessage(e, m.version));
    }
    return whole ? ack(0, await respond(whole)) : ack(0);
  }

  /** Takes one CHUNK_SEND; the whole request after the last. SpdmError when a chunk does not fit the transfer. */
  private accept(m: ChunkSend, size: number): Buffer | undefined {
    const last = (m.attributes & CHUNK_LAST) !== 0;
    check(size <= this.config.dataTransferSize);
    let t = this.largeRequest;
    if (!t) {
      const total = m.largeMessageSize ?? 0;
      // A large message is one that does not fit a transfer, so chunk 0 is never the last.
      check(
        m.chunkSeqNo === 0 && total > MIN_DATA_TRANSFER_SIZE && total <= this.config.maxSpdmMsgSize && !last,
      );
      t = { handle: m.handle, seq: 0, size: total, parts: [], received: 0 };
      this.largeRequest = t;
    } else {
      check(m.handle === t.handle && m.chunkSeqNo === t.seq + 1); // a wrapped ChunkSeqNo never matches
      t.seq = m.chunkSeqNo;
    }
    const received = t.received + m.chunk.length;
    check(received <= t.size && (!last || received === t.size));
    t.parts.push(m.chunk);
    t.received = received;
    if (!last) return undefined;
    this.largeRequest = undefined;
    return Buffer.concat(t.parts);
  }
}
