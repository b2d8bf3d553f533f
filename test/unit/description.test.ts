import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  DescriptionError,
  defaultDescription,
  loadDescription,
  parseDescription,
} from "../../src/device/description.js";

describe("device descriptions", () => {
  it("defaults to one TEE-IO function with one mailbox listing discovery, CMA and secured CMA", () => {
    const d = defaultDescription();
    expect(d.bus).toBe(1);
    expect(d.functions).toHaveLength(1);
    const fn = d.functions[0]!;
    expect(fn.function).toBe(0);
    expect(fn.teeIo).toBe(true);
    expect(fn.portType).toBe("endpoint");
    expect(fn.mailboxes).toEqual([
      {
        protocols: [
          { vendorId: 1, type: 0 },
          { vendorId: 1, type: 1 },
          { vendorId: 1, type: 2 },
        ],
      },
    ]);
  });

  it("a CXL IDE port's defaults are spdm-emu's sample port: port 0, key and IV generation, K_SET_STOP, both modes", () => {
    expect(defaultDescription().functions[0]!.cxl).toBeUndefined();
    expect(parseDescription({ functions: [{ cxl: { ide: {} } }] }).functions[0]!.cxl).toEqual({
      ide: {
        portIndex: 0,
        keyGeneration: true,
        ivGeneration: true,
        kSetStop: true,
        modes: ["SKID", "CONTAINMENT"],
      },
    });
  });

  it("accepts hex strings for numbers", () => {
    const d = parseDescription({
      functions: [
        { vendorId: "0x8086", deviceId: 4660, mailboxes: [{ port: 0, protocols: ["0001:00", "0001:01"] }] },
      ],
    });
    expect(d.functions[0]!.vendorId).toBe(0x8086);
    expect(d.functions[0]!.deviceId).toBe(4660);
    expect(d.functions[0]!.mailboxes[0]!.port).toBe(0);
  });

  it.each([
    [
      { functions: [{ mailboxes: [{ protocols: ["0001:01"] }] }] },
      "functions[0].mailboxes[0].protocols: must list DOE Discovery",
    ],
    [
      { functions: [{ mailboxes: [{ protocols: ["01:1"] }] }] },
      'functions[0].mailboxes[0].protocols[0]: "01:1" is not a protocol',
    ],
    [
      { functions: [{ vendorId: "0xZZ" }] },
      "functions[0].vendorId: must be a number or a 0x-prefixed hex string",
    ],
    [{ functions: [{ function: 8 }] }, "functions[0].function:"],
    [{ functions: [{ function: 1 }] }, "functions: a device needs function 0"],
    [{ functions: [{}, { function: 0 }] }, "functions[1].function: function 0 appears twice"],
    [{ functions: [{ portType: "bridge" }] }, "functions[0].portType:"],
    [{ bus: 256 }, "bus:"],
    [{ functions: [{ cxl: { ide: { modes: [] } } }] }, "functions[0].cxl.ide.modes:"],
    [{ functions: [{ cxl: { ide: { modes: ["FAST"] } } }] }, "functions[0].cxl.ide.modes[0]:"],
    [{ functions: [{ cxl: { ide: { portIndex: 256 } } }] }, "functions[0].cxl.ide.portIndex:"],
    [{ colour: "red" }, "colour"],
    [{ cxlTsp: { secondarySessions: 5 } }, "cxlTsp.secondarySessions:"],
    [
      { cxlTsp: { secondarySessions: 4 } },
      "spdm.sessionLimit: must be at least 1 + cxlTsp.secondarySessions (4)",
    ],
    [
      { cxlTsp: {}, spdm: { capabilities: ["CERT", "CHAL", "KEY_EX", "ENCRYPT", "MAC"] } },
      "spdm.capabilities: secondary CXL TSP sessions need PSK or PSK_WITH_CONTEXT",
    ],
    [{ cxlTsp: { teStateFeatures: 0x1 } }, "cxlTsp: write access control needs an explicit TE state change"],
    [{ cxlTsp: { memorySize: 100 } }, "cxlTsp.memorySize: must be a positive multiple of 64"],
  ])("rejects %j naming the bad field", (value, message) => {
    expect(() => parseDescription(value)).toThrow(DescriptionError);
    expect(() => parseDescription(value)).toThrow(message);
  });

  it("reports unreadable files and bad JSON clearly", () => {
    const dir = mkdtempSync(join(tmpdir(), "doe-emu-"));
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{ nope");
    expect(() => loadDescription(bad)).toThrow(/bad\.json is not valid JSON/);
    expect(() => loadDescription(join(dir, "missing.json"))).toThrow(/cannot read .*missing\.json/);
  });
});
