/** An in-process transport from our requester to our responder that keeps every plain request and response. */
import type { SpdmTransport } from "../../src/spdm/requester.js";
import type { SpdmResponder } from "../../src/spdm/responder.js";

export function loggedTransport(responder: SpdmResponder): { transport: SpdmTransport; wire: Buffer[] } {
  const wire: Buffer[] = [];
  const transport: SpdmTransport = {
    send: async (q) => {
      const response = await responder.handle(q);
      wire.push(q, response);
      return response;
    },
    sendSecured: async (q) => (await responder.handleSecured(q)) ?? Buffer.alloc(0),
  };
  return { transport, wire };
}
