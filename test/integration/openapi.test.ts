/** GET /openapi.json, and every route's real answers checked against it. */
import { readFileSync } from "node:fs";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { parseDescription } from "../../src/device/description.js";
import { apiRequest } from "../../src/host/api-client.js";
import type { Endpoint } from "../../src/net/framed.js";
import { withHostAndDevice } from "../support/host-device.js";
import { schemaErrors } from "../support/json-schema.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/topology.json", import.meta.url));
const nic = parseDescription(JSON.parse(readFileSync(EXAMPLE, "utf8")).devices[0].description);

interface Operation {
  responses: Record<string, { content: Record<string, { schema: Record<string, unknown> }> }>;
  requestBody?: { content: { "application/json": { schema: Record<string, unknown> } } };
}
type Document = { openapi: string; paths: Record<string, Record<string, Operation>> };

/** The status and content type of GET `path`, its body left unread (an event stream never ends). */
const head = (api: Endpoint, path: string) =>
  new Promise<[number, string]>((resolve, reject) => {
    const req = http.get({ ...api, path, agent: false }, (res) => {
      resolve([res.statusCode ?? 0, res.headers["content-type"] ?? ""]);
      req.destroy();
    });
    req.once("error", reject);
  });

it("documents every route, and each route's answers conform to it", { timeout: 60_000 }, async () => {
  await withHostAndDevice(nic, { bounceTimeoutMs: 20_000 }, async (host) => {
    const doc = (await apiRequest<Document>(host.api, "GET", "/openapi.json")).body;
    expect(doc.openapi).toBe("3.1.0");
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m} ${p}`),
    );
    const exercised = new Set<string>();

    /** Calls the route and checks its answer against the document's schema for that status. */
    const call = async (
      method: "GET" | "POST" | "DELETE",
      template: string,
      path: string,
      body?: unknown,
    ) => {
      const op = doc.paths[template]?.[method.toLowerCase()];
      if (!op) throw new Error(`${method} ${template} is not documented`);
      exercised.add(`${method.toLowerCase()} ${template}`);
      const rsp = await apiRequest<Record<string, unknown>>(host.api, method, path, body);
      if (body !== undefined) {
        // The request schema refuses exactly the bodies the handler refuses.
        const request = op.requestBody?.content["application/json"].schema;
        expect(request && schemaErrors(request, body).length === 0, `${method} ${path} request`).toBe(
          rsp.status !== 400,
        );
      }
      const schema = op.responses[rsp.status]?.content["application/json"]?.schema;
      expect(schema, `${method} ${path}: status ${rsp.status} is not documented`).toBeDefined();
      expect(
        schemaErrors(schema!, rsp.body),
        `${method} ${path} answered ${JSON.stringify(rsp.body)}`,
      ).toEqual([]);
      return rsp;
    };

    const topology = (await call("GET", "/v1/topology", "/v1/topology")).body;
    expect(topology.devices).toHaveLength(1);
    const tdev = "/v1/tdevs/{bdf}";
    const tdi = "/v1/tdis/{bdf}";
    expect((await call("POST", `${tdev}/authenticate`, "/v1/tdevs/01:00.0/authenticate")).status).toBe(200);
    expect((await call("POST", `${tdi}/bind`, "/v1/tdis/01:00.0/bind", { vm: "vm1" })).status).toBe(409);
    expect((await call("POST", `${tdev}/connect`, "/v1/tdevs/01:00.0/connect")).status).toBe(200);
    // Authenticated and connected: the topology holds an auth result and a session now.
    await call("GET", "/v1/topology", "/v1/topology");
    expect((await call("POST", `${tdi}/bind`, "/v1/tdis/01:00.1/bind", { vm: 7 })).status).toBe(200);
    expect((await call("GET", tdi, "/v1/tdis/01:00.1")).body.report).not.toBeNull();
    await call("GET", "/v1/topology", "/v1/topology");
    expect((await call("POST", `${tdi}/unbind`, "/v1/tdis/01:00.1/unbind")).status).toBe(200);
    expect((await call("POST", `${tdev}/disconnect`, "/v1/tdevs/01:00.0/disconnect")).status).toBe(200);
    expect((await call("GET", tdi, "/v1/tdis/ff:00.0")).status).toBe(404);
    expect((await call("POST", `${tdi}/bind`, "/v1/tdis/01:00.1/bind", { vm: -1 })).status).toBe(400);
    expect((await call("GET", "/v1/functions", "/v1/functions")).status).toBe(200);
    const config = "/v1/functions/{bdf}/config";
    expect((await call("GET", config, "/v1/functions/01:00.0/config?offset=0&length=64")).status).toBe(200);
    expect((await call("GET", config, "/v1/functions/01:00.0/config?length=x")).status).toBe(400);
    const write = { offset: 0x0c, width: 1, value: 0x10 }; // Cache Line Size: harmless
    expect((await call("POST", config, "/v1/functions/01:00.0/config", write)).status).toBe(200);
    // Port 1: nothing answers there, so the device given stays absent and the one above is untouched.
    expect((await call("POST", "/v1/devices", "/v1/devices", { control: "127.0.0.1:1" })).status).toBe(202);
    expect((await call("POST", "/v1/devices", "/v1/devices", { control: "nowhere" })).status).toBe(400);
    const faults = "/v1/devices/{id}/faults";
    const device = `/v1/devices/${(topology.devices as { id: string }[])[0]!.id}/faults`;
    const rule = { kind: "delay", ms: 1, count: 1 };
    expect((await call("POST", faults, device, rule)).status).toBe(201);
    expect((await call("POST", faults, device, { kind: "nonsense" })).status).toBe(400);
    expect((await call("GET", faults, device)).body.rules).toHaveLength(1);
    expect((await call("DELETE", faults, device)).body.cleared).toBe(1);
    expect((await call("GET", faults, "/v1/devices/nobody/faults")).status).toBe(404);
    exercised.add("get /openapi.json");

    for (const path of ["/v1/events", "/"]) {
      const [status, type] = await head(host.api, path);
      expect(status).toBe(200);
      expect(Object.keys(doc.paths[path]!.get!.responses[200]!.content)).toEqual([type.split(";")[0]]);
      exercised.add(`get ${path}`);
    }

    expect([...exercised].sort()).toEqual(documented.sort());
  });
});
