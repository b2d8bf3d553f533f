/**
 * The IDE extended capability (PCIe r6.0 §7.9.26, TEE-Limited streams r6.1) and the state of its
 * streams. The host programs a stream's Control register (Enable, algorithm, traffic class, Stream
 * ID; for a selective stream also Default Stream, TEE-Limited, and the RID and address association
 * blocks); the device reports the stream's state in its Status register. The state is IDE_KM's to
 * drive (r6.3 §6.33.1, §6.33.3): a stream is Secure while its keys are set going (K_SET_GO) and it is enabled, in
 * whichever order the two happen, and Insecure otherwise. Clearing Enable or K_SET_STOP ends the
 * keys' use, so a stream needs K_SET_GO again before it is Secure again.
 */
import {
  ExtCapId,
  IDE_SEL_CAP_ASSOC_NUM,
  Ide,
  IdeAddr1,
  IdeCap,
  IdeLink,
  IdeRid1,
  IdeRid2,
  IdeSel,
  IdeStreamCtl,
  IdeStreamState,
  IdeStreamSts,
  ideCapabilityBytes,
  ideSelectiveBlockBytes,
} from "../../protocol/pci.js";
import { fieldOf, toField } from "../bits.js";
import type { ConfigSpace, ExtendedCapabilityBuilder } from "./config-space.js";
import type { FunctionDescription } from "./description.js";

export type IdeDescription = NonNullable<FunctionDescription["ide"]>;
export type IdeStreamKind = "link" | "selective";
export type IdeStreamStateName = "insecure" | "secure";

/** One Link or Selective IDE stream register block: what the host programmed, and its state. */
export class IdeStream {
  /** K_SET_GO was received, and neither K_SET_STOP nor clearing Enable has ended it since. */
  private keysGo = false;

  /** Defines the stream's Control (writable bits `controlMask`) and Status registers, and watches Control. */
  constructor(
    readonly kind: IdeStreamKind,
    /** The register block's index among the streams of its kind. */
    readonly index: number,
    private readonly space: ConfigSpace,
    private readonly controlAt: number,
    private readonly statusAt: number,
    controlMask: number,
  ) {
    space.define(controlAt, 4, 0, { rw: controlMask >>> 0 });
    space.define(statusAt, 4, IdeStreamState.INSECURE, { w1c: IdeStreamSts.IDE_FAIL });
    space.watch(controlAt, 4, 0xffff_ffff, (value, before) => {
      if (before & ~value & IdeStreamCtl.ENABLE) this.keysGo = false;
      this.report();
      space.notify({ kind: "ideStream", stream: kind, index });
    });
  }

  private get control(): number {
    return this.space.read(this.controlAt, 4);
  }

  get enabled(): boolean {
    return (this.control & IdeStreamCtl.ENABLE) !== 0;
  }

  get streamId(): number {
    return fieldOf(this.control, IdeStreamCtl.ID);
  }

  get state(): IdeStreamStateName {
    return this.enabled && this.keysGo ? "secure" : "insecure";
  }

  /** IDE_KM K_SET_GO for the stream (every sub-stream's keys in place): Secure once it is enabled. */
  keySetGo(): void {
    this.keysGo = true;
    this.report();
  }

  /** IDE_KM K_SET_STOP: Insecure. */
  keySetStop(): void {
    this.keysGo = false;
    this.report();
  }

  private report(): void {
    const state = this.state === "secure" ? IdeStreamState.SECURE : IdeStreamState.INSECURE;
    const status = this.space.read(this.statusAt, 4);
    this.space.set(this.statusAt, 4, ((status & ~IdeStreamSts.STATE) | state) >>> 0);
  }
}

export interface IdeCapabilityBuilder extends ExtendedCapabilityBuilder {
  /** The streams, Link IDE streams first, once the capability is laid out. */
  readonly streams: readonly IdeStream[];
}

/**
 * The capability: IDE_KM and AES-GCM-256 (the only algorithm) supported, no flow-through,
 * aggregation, PCRC, partial header encryption or selective IDE for configuration requests, so their
 * control bits are read-only 0. Every selective stream has the same number of address association
 * blocks (Linux relies on it).
 */
export function ideCapability(ide: IdeDescription): IdeCapabilityBuilder {
  const streams: IdeStream[] = [];
  const { linkStreams, selectiveStreams, addressBlocks } = ide;
  return {
    id: ExtCapId.IDE,
    version: Ide.CAP_VERSION,
    size: ideCapabilityBytes(linkStreams, selectiveStreams, addressBlocks),
    streams,
    init(space, base) {
      const capability =
        IdeCap.IDE_KM |
        (linkStreams > 0 ? IdeCap.LINK | toField(linkStreams - 1, IdeCap.LINK_TC_NUM) : 0) |
        (selectiveStreams > 0 ? IdeCap.SELECTIVE | toField(selectiveStreams - 1, IdeCap.SEL_NUM) : 0) |
        (ide.teeLimited ? IdeCap.TEE_LIMITED : 0);
      space.define(base + Ide.CAP, 4, capability >>> 0);
      // IDE Control holds only Flow-Through IDE Stream Enabled, read-only 0 without flow-through.
      const linkControl = IdeStreamCtl.ENABLE | IdeStreamCtl.ALG | IdeStreamCtl.TC | IdeStreamCtl.ID;
      const selectiveControl =
        linkControl | IdeStreamCtl.DEFAULT | (ide.teeLimited ? IdeStreamCtl.TEE_LIMITED : 0);
      const link0 = base + Ide.LINK_STREAM_0;
      for (let i = 0; i < linkStreams; i++) {
        const at = link0 + i * Ide.LINK_BLOCK_SIZE;
        streams.push(new IdeStream("link", i, space, at + IdeLink.CTL, at + IdeLink.STS, linkControl));
      }
      const selective0 = link0 + linkStreams * Ide.LINK_BLOCK_SIZE;
      for (let i = 0; i < selectiveStreams; i++) {
        const at = selective0 + i * ideSelectiveBlockBytes(addressBlocks);
        space.define(at + IdeSel.CAP, 4, toField(addressBlocks, IDE_SEL_CAP_ASSOC_NUM));
        streams.push(
          new IdeStream("selective", i, space, at + IdeSel.CTL, at + IdeSel.STS, selectiveControl),
        );
        space.define(at + IdeSel.RID_1, 4, 0, { rw: IdeRid1.LIMIT });
        space.define(at + IdeSel.RID_2, 4, 0, { rw: (IdeRid2.VALID | IdeRid2.BASE | IdeRid2.SEG) >>> 0 });
        for (let b = 0; b < addressBlocks; b++) {
          const block = at + IdeSel.ADDR_0 + b * IdeSel.ADDR_BLOCK_SIZE;
          space.define(block, 4, 0, { rw: (IdeAddr1.VALID | IdeAddr1.BASE_LOW | IdeAddr1.LIMIT_LOW) >>> 0 });
          // Memory Limit Upper and Memory Base Upper.
          space.define(block + 4, 4, 0, { rw: 0xffff_ffff });
          space.define(block + 8, 4, 0, { rw: 0xffff_ffff });
        }
      }
    },
  };
}
