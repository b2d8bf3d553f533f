import { describe, expect, it } from "vitest";
import { parseTopology, TopologyError } from "../../src/fixture/topology.js";

describe("topology schema", () => {
  const device = { description: { functions: [{ function: 0 }] } };

  it("takes a host per entry", () => {
    const t = parseTopology({
      devices: [
        { ...device, host: "hostA" },
        { ...device, bus: 2, host: "hostA" },
      ],
    });
    expect(t.devices.map((e) => e.host)).toEqual(["hostA", "hostA"]);
  });

  it("refuses a host for a device already running, and an empty host", () => {
    expect(() => parseTopology({ devices: [{ control: "127.0.0.1:4000", host: "hostA" }] })).toThrow(
      /devices\.0: a device already running \(control\) has no host to start it in/,
    );
    expect(() => parseTopology({ devices: [{ ...device, host: "" }] })).toThrow(TopologyError);
  });
});
