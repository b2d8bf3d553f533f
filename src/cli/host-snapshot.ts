/** The host's startup snapshot entry (dist/host.blob): see snapshot.ts. */
import { hostCommand } from "./host.js";
import { snapshotMain } from "./snapshot.js";

snapshotMain(hostCommand);
