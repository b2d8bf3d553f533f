import type { TdispMessage } from "../../protocol/tdisp.js";

/** A TDISP message without its header fields, which the tests fill in. */
export type TdispBody = TdispMessage extends infer M
  ? M extends TdispMessage
    ? Omit<M, "version" | "functionId">
    : never
  : never;
