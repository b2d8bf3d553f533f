/**
 * The status page in a real browser: Playwright driving the system's chromium (Debian's package;
 * .ci/run installs it). Skips, saying why, when there is no chromium or no playwright-core.
 * STATUS_PAGE_SCREENSHOT=docs/status-page.png also saves the screenshot the README shows.
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseDescription } from "../../src/device/description.js";
import { startDevice } from "../../src/device/device.js";
import { apiRequest } from "../../src/host/api-client.js";
import { silentLogger } from "../../src/log.js";
import { formatEndpoint } from "../../src/net/framed.js";
import { withHostAndDevice } from "../support/host-device.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/topology.json", import.meta.url));
const [nic, multi] = (
  JSON.parse(readFileSync(EXAMPLE, "utf8")).devices as { name: string; bus: number; description: object }[]
).map((e) => parseDescription({ ...e.description, name: e.name, bus: e.bus }));

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));
const playwright = await import("playwright-core").catch(() => undefined);
const skipped = !CHROMIUM
  ? "no chromium found (apt-get install chromium)"
  : !playwright
    ? "playwright-core is not installed (npm ci)"
    : undefined;
if (skipped) console.warn(`status page browser test skipped: ${skipped}`);

describe.skipIf(skipped !== undefined)("status page in chromium", () => {
  it("shows the topology as a tree and follows events without a reload: a bind, a hotplugged device", {
    timeout: 60_000,
  }, async () => {
    await withHostAndDevice(nic!, { bounceTimeoutMs: 20_000 }, async (host) => {
      const browser = await playwright!.chromium.launch({ executablePath: CHROMIUM });
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        await page.goto(`http://${formatEndpoint(host.api)}/`);
        await page.locator("#live.up").waitFor();
        const device = page.locator('li.device[data-device="tee-nic"]');
        await device.locator("li.function").nth(3).waitFor();
        expect(await device.locator("li.function").evaluateAll((fs) => fs.map((f) => f.dataset.bdf))).toEqual(
          ["01:00.0", "01:00.1", "01:00.2", "01:00.3"],
        );
        expect(await device.locator('li.tdev[data-bdf="01:00.0"] .badge').first().textContent()).toBe(
          "unauthenticated",
        );
        expect(await device.locator("li.tdi").count()).toBe(4);
        expect(await device.locator("li.mailbox").count()).toBeGreaterThan(0);
        expect(await page.locator("#n-devices").textContent()).toBe("1");
        await page.evaluate(() => Object.assign(globalThis, { notReloaded: true }));

        expect((await apiRequest(host.api, "POST", "/v1/tdevs/01:00.0/connect")).status).toBe(200);
        expect((await apiRequest(host.api, "POST", "/v1/tdis/01:00.1/bind", { vm: "vm1" })).status).toBe(200);
        const tdi = page.locator('li.tdi[data-bdf="01:00.1"]');
        await tdi.locator(".vm", { hasText: "vm1" }).waitFor();
        expect(await tdi.textContent()).toContain("TDISP RUN");
        await page.locator('li.tdev[data-bdf="01:00.0"] .badge', { hasText: "connected" }).waitFor();

        const second = await startDevice({
          description: multi!,
          port: 0,
          host: host.hotplug!,
          log: silentLogger,
        });
        try {
          await page.locator('li.device[data-device="tee-multifunction"]').waitFor();
          await page.locator("#n-devices", { hasText: "2" }).waitFor();
          await page.locator("#events li", { hasText: "device-added" }).first().waitFor();
          expect(await page.evaluate(() => (globalThis as { notReloaded?: boolean }).notReloaded)).toBe(true);
          const screenshot = process.env.STATUS_PAGE_SCREENSHOT;
          if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
        } finally {
          await second.stop();
        }
        await page.locator('li.device[data-device="tee-multifunction"]').waitFor({ state: "detached" });
      } finally {
        await browser.close();
      }
    });
  });
});
