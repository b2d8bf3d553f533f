/**
 * The measurement blocks the default device had before it took DMTF's sample set: tests about
 * something else than the default pin them, so their counts and layouts stay as they were.
 */
import type { SpdmSettings } from "../../src/spdm/responder-settings.js";

export const FIVE_MEASUREMENTS: SpdmSettings["measurements"] = [
  { index: 1, type: "ImmutableRom", value: "doe-emu boot ROM 1.0", raw: false },
  { index: 2, type: "MutableFirmware", value: "doe-emu device firmware 1.0.0", raw: false },
  { index: 3, type: "HardwareConfig", value: "doe-emu hardware configuration: 1 PF, TEE-IO", raw: false },
  { index: 4, type: "FirmwareConfig", value: "doe-emu firmware configuration: defaults", raw: false },
  { index: 5, type: "Version", value: "1.0.0", raw: true },
];
