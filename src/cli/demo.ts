/**
 * `doe-emu demo` (npm start): the main job end to end. The example topology's device processes and
 * a TSM host start on free ports; the host scans them and binds TDEVs/TDIs; each TDEV with a CMA
 * mailbox is authenticated with SPDM through the host's API; a secure session runs through each
 * TDEV's bouncer; each TDEV that can is connected (session + IDE); a VF's TDI is bound over TDISP;
 * a PF's bound TDI is pushed to ERROR by a `setpci` BAR write, unbound and re-bound; a summary
 * closes it. Everything stops at the end, on success or failure.
 */
import { join } from "node:path";
import type { Argv } from "yargs";
import type { TdiView, TopologyView } from "../host/api.js";
import type { AuthResult } from "../host/registry.js";
import { type Endpoint, formatEndpoint } from "../net/framed.js";
import { run } from "./common.js";

const step = (n: number, title: string) => console.log(`\n== ${n}. ${title}`);

type Answer = { status: number; body: { error?: string } };

/** Prints what was asked and the HTTP status (with the error, if any); throws when it is not `want`. */
async function expectStatus(what: string, call: Promise<Answer>, want: number): Promise<void> {
  const { status, body } = await call;
  const detail = status === 200 ? "" : `: ${body.error}`;
  console.log(`${what}: HTTP ${status}${detail}`);
  if (status !== want) throw new Error(`${what} answered HTTP ${status}, expected ${want}`);
}

const tdiCall = async (api: Endpoint, bdf: string, op: "bind" | "unbind", vm?: string): Promise<Answer> => {
  const { apiRequest } = await import("../host/api-client.js");
  return apiRequest(api, "POST", `/v1/tdis/${bdf}/${op}`, vm === undefined ? undefined : { vm });
};

/** The TDI as the host sees it now: GET /v1/tdis asks the device for its live TDISP state. */
async function showTdi(api: Endpoint, bdf: string): Promise<void> {
  const { apiRequest } = await import("../host/api-client.js");
  const { body: tdi } = await apiRequest<TdiView>(api, "GET", `/v1/tdis/${bdf}`);
  const ranges = tdi.report?.mmioRanges.map((r) => `${r.firstPage}×${r.numberOfPages}`).join(" ") ?? "-";
  const digest = tdi.reportDigest ? `${tdi.reportDigest.slice(0, 16)}…` : "-";
  console.log(
    `  ${bdf}: TDISP ${tdi.tdispState}, bound to ${tdi.boundTo ?? "-"}, report MMIO pages ${ranges}, digest ${digest}`,
  );
}

/** Runs the real `doe-emu setpci --api` and shows the command line, as a user would type it. */
async function setpci(api: Endpoint, bdf: string, op: string): Promise<void> {
  const [{ execFile }, { promisify }, { cliPath }] = await Promise.all([
    import("node:child_process"),
    import("node:util"),
    import("../fixture/spawn-device.js"),
  ]);
  const args = ["setpci", "--api", formatEndpoint(api), "-s", bdf, op];
  console.log(`$ doe-emu ${args.join(" ")}`);
  await promisify(execFile)(process.execPath, [cliPath(), ...args]);
}

async function runDemo(argv: { topology?: string }): Promise<void> {
  const [{ startTopology }, { apiRequest }, { packageRoot }, { formatTree }, { runSessionRequester }] =
    await Promise.all([
      import("../fixture/topology.js"),
      import("../host/api-client.js"),
      import("../fixture/spawn-device.js"),
      import("./host.js"),
      import("../requester/run.js"),
    ]);
  const file = argv.topology ?? join(packageRoot(), "examples", "topology.json");
  console.log(`doe-emu demo: device processes and a TSM host from ${file}`);
  const started = performance.now();
  const t = await startTopology(file);
  try {
    const api = t.api;
    console.log(`host pid ${t.host.pid}, management API http://${api.host}:${api.port}`);
    for (const d of t.devices)
      console.log(`device ${d.name}: pid ${d.pid}, ${d.mailboxes.length} DOE mailbox endpoint(s)`);
    console.log(`ready in ${((performance.now() - started) / 1000).toFixed(2)} s`);

    step(1, "Bus scan: functions, DOE mailboxes, TDEVs and TDIs");
    console.log(formatTree(await t.topology()));

    step(2, "SPDM authentication of each TDEV through its CMA mailbox");
    const authenticated: string[] = [];
    for (const tdev of t.tdevs) {
      if (!tdev.cmaMailbox) {
        console.log(`${tdev.bdf}: no CMA mailbox, nothing to authenticate`);
        continue;
      }
      const rsp = await apiRequest<{ auth?: AuthResult; error?: string }>(
        api,
        "POST",
        `/v1/tdevs/${tdev.bdf}/authenticate`,
      );
      const auth = rsp.body.auth;
      if (rsp.status !== 200 || !auth)
        throw new Error(`authenticating ${tdev.bdf} failed: ${rsp.body.error ?? rsp.status}`);
      authenticated.push(tdev.bdf);
      const algs = Object.entries(auth.algorithms)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
      console.log(`${tdev.bdf}: SPDM ${auth.version}; ${algs}`);
      console.log(`  leaf ${auth.leafSubject}, digest ${auth.leafCertDigest.slice(0, 32)}…`);
      console.log(`  trust anchor: ${auth.trustAnchor ?? "none given (chain checked for consistency only)"}`);
      console.log(
        `  ${auth.measurements.length} signed measurement blocks: ${auth.measurements.map((m) => `#${m.index} ${m.type}`).join(", ")}`,
      );
    }

    step(
      3,
      "SPDM secure session through the TDEV bounce endpoints (type 1 -> CMA mailbox, type 2 -> secured)",
    );
    let sessions = 0;
    for (const tdev of t.tdevs) {
      if (!tdev.cmaMailbox || tdev.cmaMailbox !== tdev.securedMailbox) {
        // Discovery through the bouncer is the CMA mailbox's, as a kernel TSM sends every type there.
        const why = tdev.securedMailbox
          ? "secured CMA is on another mailbox than CMA"
          : "no secured CMA mailbox";
        console.log(
          `${tdev.bdf}: ${tdev.cmaMailbox ? why : "no CMA mailbox"}; no session through the bouncer`,
        );
        continue;
      }
      const { session } = await runSessionRequester(tdev.bounce, {
        exeMode: "CONTINUE",
        connectionSteps: ["DIGEST", "CERT"],
        measurementMode: "ALL",
        session: { kind: "KEY_EX" },
      });
      console.log(
        `${tdev.bdf}: KEY_EX session ${session.sessionId}, ${session.dhe}, ${session.aead}, handshake ${session.handshake}`,
      );
      console.log(`  ${session.steps.join(", ")}; ${session.securedRoundTrips} secured round trips`);
      sessions++;
    }

    step(4, "Connect: the host holds a KEY_EX session and programs IDE keys with IDE-KM (pci_tsm_connect)");
    for (const tdev of t.tdevs) {
      const rsp = await apiRequest<{ session?: string; ide?: string; error?: string }>(
        api,
        "POST",
        `/v1/tdevs/${tdev.bdf}/connect`,
      );
      const { session, ide, error } = rsp.body;
      console.log(
        rsp.status === 200
          ? `${tdev.bdf}: connected, session ${session}, IDE stream ${ide}`
          : `${tdev.bdf}: not connected (HTTP ${rsp.status}: ${error})`,
      );
    }

    step(
      5,
      "TDI flow: bind a VF to a VM over TDISP (lock, report verified, start), as Linux pci_tsm_bind does",
    );
    const view: TopologyView = await t.topology();
    const vf = view.tdis.find((d) => d.tdev !== d.bdf) ?? view.tdis[0];
    if (!vf) throw new Error("the topology has no TDI");
    await expectStatus(
      `bind ${vf.bdf} (TDEV ${vf.tdev}) to VM guest-1`,
      tdiCall(api, vf.bdf, "bind", "guest-1"),
      200,
    );
    await expectStatus("bind it to guest-1 again (no-op)", tdiCall(api, vf.bdf, "bind", "guest-1"), 200);
    await expectStatus(
      "bind it to guest-2 (refused: bound to another VM)",
      tdiCall(api, vf.bdf, "bind", "guest-2"),
      409,
    );
    await expectStatus("unbind it (STOP_INTERFACE)", tdiCall(api, vf.bdf, "unbind"), 200);

    step(6, "A locked TDI: a BAR moved behind the host's back puts it in ERROR; unbind, restore, re-bind");
    const pf = view.tdis.find(
      (d) => d.tdev === d.bdf && view.tdevs.some((x) => x.bdf === d.tdev && x.connected),
    );
    const bar0 = view.devices
      .flatMap((d) => d.functions)
      .find((f) => f.bdf === pf?.bdf)
      ?.bars.find((b) => b.index === 0 && b.address !== null);
    if (!pf || !bar0?.address) throw new Error("the topology has no connected PF TDI with an assigned BAR 0");
    await expectStatus(`bind ${pf.bdf} to VM guest-3`, tdiCall(api, pf.bdf, "bind", "guest-3"), 200);
    await showTdi(api, pf.bdf);
    const assigned = Number(bar0.address) >>> 0;
    const moved = (assigned + Number(bar0.size)) >>> 0;
    await setpci(api, pf.bdf, `BASE_ADDRESS_0=${moved.toString(16)}`);
    await showTdi(api, pf.bdf);
    await expectStatus("unbind it (STOP_INTERFACE from ERROR)", tdiCall(api, pf.bdf, "unbind"), 200);
    await expectStatus(
      "re-bind while BAR 0 is elsewhere (the report does not verify)",
      tdiCall(api, pf.bdf, "bind", "guest-3"),
      502,
    );
    await setpci(api, pf.bdf, `BASE_ADDRESS_0=${assigned.toString(16)}`);
    await expectStatus(
      "re-bind with BAR 0 back where the host assigned it",
      tdiCall(api, pf.bdf, "bind", "guest-3"),
      200,
    );
    await showTdi(api, pf.bdf);

    step(7, "Summary");
    const end = await t.topology();
    console.log(
      `${end.devices.length} devices, ${end.tdevs.length} TDEVs (${authenticated.length} authenticated with SPDM, ${sessions} secure session through the bouncer), ${end.tdis.length} TDIs`,
    );
    console.log(`TDEVs: ${end.tdevs.map((d) => `${d.bdf} ${d.state}`).join(", ")}`);
    const tdiText = (d: TopologyView["tdis"][number]) =>
      d.boundTo === null ? d.bdf : `${d.bdf} (${d.boundTo}, ${d.tdispState})`;
    console.log(`TDIs:  ${end.tdis.map(tdiText).join(", ")}`);
  } finally {
    await t.stop();
  }
  console.log(`\nall processes stopped; ${((performance.now() - started) / 1000).toFixed(2)} s in all`);
}

export const demoCommand = {
  command: "demo",
  describe:
    "Start the example topology (devices + TSM host), authenticate with SPDM, bind a TDI, print a summary",
  builder: (y: Argv) =>
    y.option("topology", { type: "string", describe: "Topology file (default: examples/topology.json)" }),
  handler: run(runDemo),
};
