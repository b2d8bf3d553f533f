import { describe, expect, it } from "vitest";
import {
  Doe,
  decodeExtCapHeader,
  ExtCapId,
  FIRST_EXT_CAP,
  Ide,
  IdeCap,
  IdeSel,
  IdeStreamCtl,
  IdeStreamState,
  Sriov,
} from "../../protocol/pci.js";
import { fieldOf, toField } from "../../src/bits.js";
import { DescriptionError, parseDescription } from "../../src/device/description.js";
import type { DeviceModel } from "../../src/device/model.js";
import { findExtCap, modelOf } from "../support/model.js";

const RID = 0x0100;
const withIde = (ide: object, more: object = {}) => parseDescription({ functions: [{ ide, ...more }] });

/** Offsets of the stream register blocks, found from the IDE Capability register as Linux pci_ide_init does. */
function layout(model: DeviceModel, cap: number) {
  const capability = model.configRead(RID, cap + Ide.CAP, 4);
  const links = capability & IdeCap.LINK ? 1 + fieldOf(capability, IdeCap.LINK_TC_NUM) : 0;
  const selectives = capability & IdeCap.SELECTIVE ? 1 + fieldOf(capability, IdeCap.SEL_NUM) : 0;
  const link = (i: number) => cap + Ide.LINK_STREAM_0 + i * Ide.LINK_BLOCK_SIZE;
  const selective: number[] = [];
  for (let i = 0, at = link(links); i < selectives; i++) {
    selective.push(at);
    at += IdeSel.ADDR_0 + IdeSel.ADDR_BLOCK_SIZE * (model.configRead(RID, at + IdeSel.CAP, 4) & 0xf);
  }
  return { capability, links: Array.from({ length: links }, (_, i) => link(i)), selective };
}

describe("IDE extended capability", () => {
  it("sits last in the extended capability list, 0x0030 version 1, as long as its stream blocks", () => {
    const model = modelOf(
      withIde(
        { linkStreams: 2, selectiveStreams: 3, addressBlocks: 2 },
        { sriov: { totalVfs: 2 }, mailboxes: [{}, {}] },
      ),
    );
    const cap = findExtCap(model, RID, ExtCapId.IDE)!;
    expect(cap).toBe(FIRST_EXT_CAP + 2 * Doe.SIZEOF + Sriov.SIZEOF);
    expect(decodeExtCapHeader(model.configRead(RID, cap, 4))).toEqual({
      id: ExtCapId.IDE,
      version: 1,
      next: 0,
    });
    const { capability, links, selective } = layout(model, cap);
    expect(capability).toBe(
      IdeCap.LINK | IdeCap.SELECTIVE | IdeCap.IDE_KM | IdeCap.TEE_LIMITED | (1 << 13) | (2 << 16),
    );
    expect(links).toEqual([cap + 0x0c, cap + 0x14]);
    expect(selective).toEqual([cap + 0x1c, cap + 0x1c + 44, cap + 0x1c + 88]);
    // The last register (the last stream's last Memory Base Upper) is the capability's last DW.
    const end = cap + 0x1c + 3 * 44;
    model.configWrite(RID, end - 4, 4, 0x12345678);
    expect(model.configRead(RID, end - 4, 4)).toBe(0x12345678);
    model.configWrite(RID, end, 4, 0xffffffff);
    expect(model.configRead(RID, end, 4)).toBe(0);
  });

  it("takes what the host programs where the spec makes it writable, and starts every stream Insecure", () => {
    const model = modelOf(
      withIde({ linkStreams: 1, selectiveStreams: 1, addressBlocks: 1, teeLimited: false }),
    );
    const cap = findExtCap(model, RID, ExtCapId.IDE)!;
    const { links, selective } = layout(model, cap);
    const [link, sel] = [links[0]!, selective[0]!];
    const reg = (at: number) => model.configRead(RID, at, 4);
    const writeAll = (at: number) => model.configWrite(RID, at, 4, 0xffffffff);
    for (const at of [
      cap + Ide.CAP,
      cap + Ide.CTL,
      link,
      link + 4,
      sel,
      sel + 4,
      sel + 8,
      sel + 12,
      sel + 16,
    ])
      writeAll(at);
    for (let b = 0; b < 3; b++) writeAll(sel + IdeSel.ADDR_0 + 4 * b);
    const streamRw = IdeStreamCtl.ENABLE | IdeStreamCtl.ALG | IdeStreamCtl.TC | IdeStreamCtl.ID;
    expect(reg(cap + Ide.CAP)).toBe(IdeCap.LINK | IdeCap.SELECTIVE | IdeCap.IDE_KM);
    expect(reg(cap + Ide.CTL)).toBe(0); // no flow-through
    expect([reg(link), reg(link + 4)]).toEqual([streamRw >>> 0, IdeStreamState.INSECURE]);
    expect([sel, sel + 4, sel + 8, sel + 12, sel + 16].map(reg)).toEqual([
      1, // one address association block, read-only
      (streamRw | IdeStreamCtl.DEFAULT) >>> 0, // no TEE-Limited bit without TEE-limited streams
      IdeStreamState.INSECURE,
      0x00ffff00,
      0xffffff01,
    ]);
    expect([0, 4, 8].map((b) => reg(sel + IdeSel.ADDR_0 + b))).toEqual([0xffffff01, 0xffffffff, 0xffffffff]);
  });

  it("a stream is Secure while its keys are set going and it is enabled, in either order", () => {
    const model = modelOf(withIde({ linkStreams: 1, selectiveStreams: 2 }));
    const streams = model.ideStreams(RID);
    expect(streams.map((s) => [s.kind, s.index, s.state])).toEqual([
      ["link", 0, "insecure"],
      ["selective", 0, "insecure"],
      ["selective", 1, "insecure"],
    ]);
    const cap = findExtCap(model, RID, ExtCapId.IDE)!;
    const sel0 = layout(model, cap).selective[0]!;
    const stream = streams[1]!;
    const control = (enable: boolean) =>
      model.configWrite(
        RID,
        sel0 + IdeSel.CTL,
        4,
        toField(7, IdeStreamCtl.ID) | (enable ? IdeStreamCtl.ENABLE : 0),
      );
    const status = () => model.configRead(RID, sel0 + IdeSel.STS, 4);

    control(false); // Linux: set up, keys, then enable
    expect([stream.streamId, stream.enabled]).toEqual([7, false]);
    stream.keySetGo();
    expect([stream.state, status()]).toEqual(["insecure", IdeStreamState.INSECURE]);
    control(true);
    expect([stream.state, status()]).toEqual(["secure", IdeStreamState.SECURE]);
    expect(streams.filter((s) => s !== stream).map((s) => s.state)).toEqual(["insecure", "insecure"]);
    control(false); // clearing Enable ends the keys' use
    control(true);
    expect([stream.state, status()]).toEqual(["insecure", IdeStreamState.INSECURE]);
    stream.keySetGo(); // enabled first, keys second
    expect([stream.state, status()]).toEqual(["secure", IdeStreamState.SECURE]);
    stream.keySetStop();
    expect([stream.state, status()]).toEqual(["insecure", IdeStreamState.INSECURE]);
    expect(model.ideStreams(0x0101)).toEqual([]);
  });

  it("has no IDE capability unless described; the default device's function has one", () => {
    expect(findExtCap(modelOf(parseDescription({ functions: [{}] })), RID, ExtCapId.IDE)).toBeUndefined();
    expect(findExtCap(modelOf(parseDescription({})), RID, ExtCapId.IDE)).toBeDefined();
    expect(withIde({}).functions[0]!.ide).toEqual({
      linkStreams: 0,
      selectiveStreams: 1,
      addressBlocks: 1,
      teeLimited: true,
      portIndex: 1,
    });
  });

  it.each([
    [{ linkStreams: 9 }, "functions[0].ide.linkStreams:"],
    [{ selectiveStreams: 0 }, "functions[0].ide.selectiveStreams: an IDE capability needs at least one"],
    [{ addressBlocks: 16 }, "functions[0].ide.addressBlocks:"],
    [{ portIndex: 256 }, "functions[0].ide.portIndex:"],
    [{ portIndex: -1 }, "functions[0].ide.portIndex:"],
    [{ selectiveStreams: 256, addressBlocks: 15 }, "functions[0].ide: the extended capabilities need"],
    [{ colour: "red" }, "functions[0].ide:"],
  ])("rejects %j naming the bad field", (ide, message) => {
    expect(() => withIde(ide)).toThrow(DescriptionError);
    expect(() => withIde(ide)).toThrow(message);
  });
});
