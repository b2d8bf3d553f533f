/** A spawned doe-emu process stops itself when its spawner is gone (src/fixture/spawn-device.ts PARENT_PIPE_ENV). */
import net from "node:net";
import { PARENT_PIPE_ENV } from "../fixture/spawn-device.js";

/**
 * Watches the pipe the spawner left open on the fd named by PARENT_PIPE_ENV: its end (the spawner
 * exited, even by SIGKILL) raises SIGTERM here, so a device or host stops as cleanly as when told.
 */
export function watchParent(): void {
  const fd = Number(process.env[PARENT_PIPE_ENV]);
  // Not handed on: a process this one spawns gets its own pipe or none.
  delete process.env[PARENT_PIPE_ENV];
  if (!Number.isInteger(fd) || fd < 3) return;
  let pipe: net.Socket;
  try {
    pipe = new net.Socket({ fd, readable: true, writable: false });
  } catch {
    return;
  }
  let gone = false;
  const stop = () => {
    if (gone) return;
    gone = true;
    process.kill(process.pid, "SIGTERM");
  };
  pipe.once("end", stop);
  pipe.once("error", stop);
  // The pipe alone must not keep a short command running.
  pipe.unref();
  pipe.resume();
}
