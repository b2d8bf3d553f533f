/**
 * The host's check of a device interface report against the BARs it assigned and the function's
 * MSI-X capability (src/host/bind.ts verifyReport); the reports are built as the device builds them
 * (src/device/tdisp.ts mmioRanges), then spoiled one way at a time.
 */
import { describe, expect, it } from "vitest";
import { Msix } from "../../protocol/pci.js";
import { type DeviceInterfaceReport, InterfaceInfo, MmioRangeAttribute } from "../../protocol/tdisp.js";
import { mmioRanges } from "../../src/device/tdisp.js";
import { type BindFunction, HOST_MMIO_REPORTING_OFFSET, verifyReport } from "../../src/host/bind.js";

const OFFSET = HOST_MMIO_REPORTING_OFFSET;

/** tee-nic's PF0 as the host assigns it: BAR0 2 MiB, BAR2 16 KiB with the MSI-X table at 0, PBA at 0x2000. */
const nic: BindFunction = {
  rid: 0x100,
  bars: [
    { index: 0, type: "mem64", prefetchable: true, size: 0x20_0000n, address: 0x40_0000_0000n },
    { index: 2, type: "mem64", prefetchable: false, size: 0x4000n, address: 0x40_0020_0000n },
  ],
  msix: { offset: 0x50, vectors: 32, table: { bar: 2, offset: 0 }, pba: { bar: 2, offset: 0x2000 } },
};

/** The report the device would give for `fn`, with `offset`. */
function deviceReport(fn: BindFunction, offset = OFFSET): DeviceInterfaceReport {
  const marks = fn.msix
    ? [
        {
          bar: fn.msix.table.bar,
          offset: BigInt(fn.msix.table.offset),
          bytes: BigInt(fn.msix.vectors * Msix.ENTRY_SIZE),
          attribute: MmioRangeAttribute.MSIX_TABLE,
        },
        {
          bar: fn.msix.pba.bar,
          offset: BigInt(fn.msix.pba.offset),
          bytes: 8n,
          attribute: MmioRangeAttribute.MSIX_PBA,
        },
      ]
    : [];
  return {
    interfaceInfo: InterfaceInfo.DMA_WITHOUT_PASID | InterfaceInfo.NO_FW_UPDATE,
    msixMessageControl: 0,
    lnrControl: 0,
    tphControl: 0,
    mmioRanges: fn.bars.flatMap((b) =>
      mmioRanges({ ...b, size: Number(b.size), address: b.address! }, offset, marks),
    ),
    deviceSpecificInfo: Buffer.alloc(0),
  };
}

describe("verifyReport", () => {
  it("accepts the device's report: BARs at address + offset, MSI-X table and PBA pages flagged", () => {
    const report = deviceReport(nic);
    // BAR0 whole, then BAR2 split: table page, the page between, PBA page, the last page.
    expect(report.mmioRanges.map((r) => [r.rangeId, r.numberOfPages, r.rangeAttributes])).toEqual([
      [0, 512, 0],
      [2, 1, MmioRangeAttribute.MSIX_TABLE],
      [2, 1, 0],
      [2, 1, MmioRangeAttribute.MSIX_PBA],
      [2, 1, 0],
    ]);
    expect(verifyReport(report, nic, OFFSET)).toBeUndefined();
  });

  it("accepts a VF's report: its share of the VF BAR, no MSI-X", () => {
    const vf: BindFunction = {
      rid: 0x102,
      bars: [{ index: 0, type: "mem64", prefetchable: true, size: 0x4000n, address: 0x40_0040_4000n }],
    };
    expect(verifyReport(deviceReport(vf), vf, OFFSET)).toBeUndefined();
  });

  it("refuses a range at the wrong address: the offset ignored, or a page off", () => {
    expect(verifyReport(deviceReport(nic, 0n), nic, OFFSET)).toMatch(/range 0 .* not within a BAR/);
    const report = deviceReport(nic);
    report.mmioRanges[0] = { ...report.mmioRanges[0]!, firstPage: report.mmioRanges[0]!.firstPage + 1n };
    expect(verifyReport(report, nic, OFFSET)).toMatch(/range 0 .* not within a BAR the host assigned/);
  });

  it("refuses a report that leaves a BAR out, or covers it twice", () => {
    const report = deviceReport(nic);
    const missing = { ...report, mmioRanges: report.mmioRanges.filter((r) => r.rangeId !== 0) };
    expect(verifyReport(missing, nic, OFFSET)).toMatch(/BAR 0 at 0x4000000000 is not covered whole/);
    const partly = { ...report, mmioRanges: report.mmioRanges.slice(0, -1) };
    expect(verifyReport(partly, nic, OFFSET)).toMatch(/BAR 2 .* not covered whole/);
    const twice = { ...report, mmioRanges: [...report.mmioRanges, report.mmioRanges[2]!] };
    expect(verifyReport(twice, nic, OFFSET)).toMatch(/overlaps another range/);
  });

  it("refuses a wrong MSI-X flag: table unflagged, a plain page flagged, MSI-X claimed without MSI-X", () => {
    const unflag = deviceReport(nic);
    unflag.mmioRanges[1] = { ...unflag.mmioRanges[1]!, rangeAttributes: 0 };
    expect(verifyReport(unflag, nic, OFFSET)).toMatch(/range 1 .* is not flagged MSI-X table, but holds it/);
    const flag = deviceReport(nic);
    flag.mmioRanges[2] = { ...flag.mmioRanges[2]!, rangeAttributes: MmioRangeAttribute.MSIX_PBA };
    expect(verifyReport(flag, nic, OFFSET)).toMatch(/range 2 .* is flagged MSI-X PBA, but does not hold it/);
    const noMsix = { ...nic, msix: undefined };
    expect(verifyReport(deviceReport(nic), noMsix, OFFSET)).toMatch(
      /flagged MSI-X, but the function has no MSI-X/,
    );
  });

  it("refuses a range straddling the MSI-X table, and a report without NO_FW_UPDATE", () => {
    const report = deviceReport(nic);
    const [table, between] = [report.mmioRanges[1]!, report.mmioRanges[2]!];
    const merged = { ...table, numberOfPages: table.numberOfPages + between.numberOfPages };
    const straddle = {
      ...report,
      mmioRanges: [report.mmioRanges[0]!, merged, ...report.mmioRanges.slice(3)],
    };
    expect(verifyReport(straddle, nic, OFFSET)).toMatch(/straddles the MSI-X table of BAR 2/);
    expect(verifyReport({ ...report, interfaceInfo: InterfaceInfo.DMA_WITHOUT_PASID }, nic, OFFSET)).toMatch(
      /lacks NO_FW_UPDATE/,
    );
  });
});
