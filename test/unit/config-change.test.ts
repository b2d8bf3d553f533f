import { describe, expect, it } from "vitest";
import {
  CapId,
  Command,
  Doe,
  ExtCapId,
  Header,
  Ide,
  IdeLink,
  IdeSel,
  IdeStreamCtl,
  Msix,
  MsixFlags,
  PciExp,
  Sriov,
  SriovCtrl,
} from "../../protocol/pci.js";
import type { ConfigChange } from "../../src/device/config-space.js";
import { parseDescription } from "../../src/device/description.js";
import { findCap, findExtCap, modelOf } from "../support/model.js";

const PF = 0x0100;

describe("config change hook", () => {
  const model = modelOf(
    parseDescription({
      functions: [
        {
          bars: [
            { index: 0, size: "0x10000", prefetchable: true },
            { index: 2, type: "mem32", size: "0x4000" },
          ],
          msix: { tableSize: 8, table: { bar: 2, offset: 0 } },
          sriov: { totalVfs: 4 },
          ide: { linkStreams: 1, selectiveStreams: 1 },
        },
      ],
    }),
  );
  const msix = findCap(model, PF, CapId.MSIX)!;
  const exp = findCap(model, PF, CapId.EXP)!;
  const sriov = findExtCap(model, PF, ExtCapId.SRIOV)!;
  const ide = findExtCap(model, PF, ExtCapId.IDE)!;
  const link0 = ide + Ide.LINK_STREAM_0;
  const sel0 = link0 + Ide.LINK_BLOCK_SIZE;

  /** The changes reported while `writes` run, as [rid, change]. */
  function changesOf(writes: [rid: number, offset: number, width: 1 | 2 | 4, value: number][]) {
    const seen: [number, ConfigChange][] = [];
    const stop = model.onConfigChange((rid, change) => seen.push([rid, change]));
    for (const [rid, offset, width, value] of writes) model.configWrite(rid, offset, width, value);
    stop();
    return seen;
  }

  it("reports a write that changes a BAR, Memory Space Enable, MSI-X control, SR-IOV or an IDE stream's control", () => {
    expect(
      changesOf([
        [PF, Header.BAR0, 4, 0xffffffff],
        [PF, Header.BAR0 + 4, 4, 0xffffffff], // the upper DW of 64-bit BAR0
        [PF, Header.BAR0 + 8 + 3, 1, 0xff], // a byte of BAR2's address
        [PF, Header.COMMAND, 2, Command.MEMORY],
        [PF, Header.COMMAND, 2, Command.MASTER],
        [PF, msix + Msix.FLAGS, 2, MsixFlags.ENABLE],
        [PF, msix + Msix.FLAGS, 2, MsixFlags.ENABLE | MsixFlags.MASKALL],
        [PF, sriov + Sriov.NUM_VF, 2, 2],
        [PF, sriov + Sriov.CTRL, 2, SriovCtrl.VFE | SriovCtrl.MSE],
        [PF, sriov + Sriov.SYS_PGSIZE, 4, 0x2],
        [PF, sriov + Sriov.BAR0 + 4, 4, 0x1],
        [PF, link0 + IdeLink.CTL, 4, IdeStreamCtl.ENABLE],
        [PF, sel0 + IdeSel.CTL, 4, 0x05000000],
      ]),
    ).toEqual([
      [PF, { kind: "bar", bar: 0 }],
      [PF, { kind: "bar", bar: 0 }],
      [PF, { kind: "bar", bar: 2 }],
      [PF, { kind: "memoryEnable", enabled: true }],
      [PF, { kind: "memoryEnable", enabled: false }],
      [PF, { kind: "msix" }],
      [PF, { kind: "msix" }],
      [PF, { kind: "sriov" }],
      [PF, { kind: "sriov" }],
      [PF, { kind: "sriov" }],
      [PF, { kind: "vfBar", bar: 0 }],
      [PF, { kind: "ideStream", stream: "link", index: 0 }],
      [PF, { kind: "ideStream", stream: "selective", index: 0 }],
    ]);
  });

  it("stays silent for writes that change nothing, read-only registers and everything else", () => {
    const vf = PF + 1; // enabled by the test above
    expect(model.configRead(vf, Header.VENDOR_ID, 2)).not.toBe(0xffff);
    expect(
      changesOf([
        [PF, Header.BAR0, 4, model.configRead(PF, Header.BAR0, 4)], // the same value again
        [PF, Header.BAR0 + 16, 4, 0xffffffff], // BAR4 is not implemented
        [PF, Header.BAR0, 1, 0x0f], // the type bits are read-only
        [PF, Header.COMMAND, 2, Command.MASTER | Command.INTX_DISABLE], // Memory Space unchanged
        [PF, Header.CACHE_LINE_SIZE, 1, 0x10],
        [PF, exp + PciExp.DEVCTL, 2, 0x2000],
        [PF, msix + Msix.TABLE, 4, 0x1000], // read-only
        [PF, sriov + Sriov.TOTAL_VF, 2, 1], // read-only
        [PF, sriov + Sriov.CTRL, 2, SriovCtrl.VFE | SriovCtrl.MSE | SriovCtrl.VFM], // VF Migration is not offered
        [PF, sel0 + IdeSel.STS, 4, 0xffffffff],
        [PF, sel0 + IdeSel.RID_1, 4, 0x00ffff00],
        [PF, ide + Ide.CAP, 4, 0],
        [PF, 0x100 + Doe.CTRL, 4, 0x1], // DOE Abort
        [vf, Header.COMMAND, 2, Command.MEMORY], // a VF's memory follows its PF's VF MSE
      ]),
    ).toEqual([]);
  });

  it("stops telling a listener once it unsubscribes", () => {
    const seen: ConfigChange[] = [];
    const stop = model.onConfigChange((_, change) => seen.push(change));
    model.configWrite(PF, Header.COMMAND, 2, Command.MEMORY);
    stop();
    model.configWrite(PF, Header.COMMAND, 2, 0);
    expect(seen).toEqual([{ kind: "memoryEnable", enabled: true }]);
  });
});
