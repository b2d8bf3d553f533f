/** `doe-emu demo` (npm start): the main job, end to end, with a readable summary. */
import { protocolId, protocolName } from "../../protocol/doe.js";
import { spawnDevice } from "../fixture/spawn-device.js";
import { DoeClient } from "../host/doe-client.js";
import { formatEndpoint } from "../net/framed.js";
import { run } from "./common.js";

async function runDemo(): Promise<void> {
  console.log("doe-emu demo: one device process, the host-side DOE client against it\n");
  const device = await spawnDevice();
  try {
    console.log(`device process ${device.pid} started`);
    for (const m of device.mailboxes) console.log(`  mailbox ${m.id} on ${formatEndpoint(m.endpoint)}`);
    console.log(`  control endpoint on ${formatEndpoint(device.control)}\n`);
    for (const m of device.mailboxes) {
      const doe = await DoeClient.connect(m.endpoint);
      console.log(`DOE discovery on mailbox ${m.id}:`);
      for (const p of doe.protocols) console.log(`  ${protocolId(p)}  ${protocolName(p)}`);
      await doe.end("SHUTDOWN");
    }
    const code = await device.exited;
    console.log(`\ndevice process exited with ${code} after SHUTDOWN`);
  } finally {
    await device.stop();
  }
}

export const demoCommand = {
  command: "demo",
  describe: "Start a device process, discover its mailboxes, print a summary",
  builder: {},
  handler: run(runDemo),
};
