/** `doe-emu doe …`: DOE client commands. */
import type { Argv } from "yargs";
import { protocolId, protocolName } from "../../protocol/doe.js";
import { DoeClient } from "../doe/client.js";
import { parseEndpoint } from "../net/framed.js";
import { run } from "./common.js";

async function runDiscover(argv: { endpoint: string; timeout: number }): Promise<void> {
  const doe = await DoeClient.connect(parseEndpoint(argv.endpoint), { timeoutMs: argv.timeout });
  doe.close();
  for (const p of doe.protocols) console.log(`${protocolId(p)} ${protocolName(p)}`);
}

export const doeCommand = {
  command: "doe",
  describe: "DOE client commands",
  builder: (y: Argv) =>
    y
      .command(
        "discover <endpoint>",
        "List the protocols a mailbox endpoint reports through DOE discovery",
        (y2) =>
          y2
            .positional("endpoint", {
              type: "string",
              demandOption: true,
              describe: "Mailbox endpoint HOST:PORT",
            })
            .option("timeout", { type: "number", default: 1000, describe: "Per-request timeout in ms" }),
        run(runDiscover),
      )
      .demandCommand(1, "name a doe command"),
  handler: () => undefined,
};
