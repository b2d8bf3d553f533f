/**
 * `npm run soak [-- --cycles N]`: the soak of src/fixture/soak.ts, a report with a verdict (exit 1
 * when the host did not remove a killed device in time, stopped answering, or did not return to
 * its baseline fd count and RSS).
 */
import { parseArgs } from "node:util";
import { runSoak, soakProblems, soakReport } from "../src/fixture/soak.js";

const { values } = parseArgs({
  options: { cycles: { type: "string", default: "100" }, pool: { type: "string", default: "3" } },
});
const result = await runSoak({
  cycles: Number(values.cycles),
  pool: Number(values.pool),
  progress: (line) => console.log(line),
});
for (const line of soakReport(result)) console.log(line);
const problems = soakProblems(result);
for (const p of problems) console.log(`FAIL: ${p}`);
process.exitCode = problems.length ? 1 : 0;
