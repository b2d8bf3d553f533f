/** `--app` / `--tdi` parsing of `doe-emu requester`: names, ALL, DMTF's order, routing IDs. */
import { describe, expect, it } from "vitest";
import { appOptions } from "../../src/cli/requester.js";

describe("--app and --tdi", () => {
  it("keeps DMTF's order whatever the order given, ALL is every protocol, --tdi is a routing ID", () => {
    expect(appOptions("TDISP,IDE_KM", undefined)).toEqual({
      protocols: ["IDE_KM", "TDISP"],
      functionId: undefined,
    });
    expect(appOptions("ALL", "01:00.0")).toEqual({
      protocols: ["IDE_KM", "TDISP", "CXL_IDE_KM", "CXL_TSP"],
      functionId: 0x0100,
    });
    expect(appOptions("CXL_TSP,CXL_IDE_KM,IDE_KM", undefined)?.protocols).toEqual([
      "IDE_KM",
      "CXL_IDE_KM",
      "CXL_TSP",
    ]);
    expect(appOptions(undefined, undefined)).toBeUndefined();
  });
  it("refuses unknown names, a bad BDF and --tdi without --app", () => {
    expect(() => appOptions("IDE_KM,CXL_FOO", undefined)).toThrow(
      "--app CXL_FOO: not one of IDE_KM, TDISP, CXL_IDE_KM, CXL_TSP, ALL",
    );
    expect(() => appOptions("TDISP", "1:0.0")).toThrow("--tdi 1:0.0: not a BB:DD.F routing ID");
    expect(() => appOptions(undefined, "01:00.0")).toThrow("--tdi needs --app TDISP");
  });
});
