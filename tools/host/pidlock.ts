/**
 * One host per run directory: `tsxen.pid`, created exclusively, is the lock,
 * for every way of starting a host (`tsxen start`, `npm start`). It holds
 * the host's pid and that process's start time (field 22 of
 * /proc/<pid>/stat, in clock ticks since boot), so that a pid file left by
 * a host that died, whose pid the system has since given to another
 * process, is known as stale: nothing is ever signalled, nor reported as
 * running, on the strength of a pid alone.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";

/** The start time of process `pid` (clock ticks since boot), or undefined if it is gone. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** The pid of the host that holds `pidFile`, if that very process still runs. */
export function runningPid(pidFile: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(pidFile, "utf8");
  } catch {
    return undefined;
  }
  const [p, start] = text.trim().split(/\s+/);
  const pid = Number(p);
  if (!Number.isSafeInteger(pid) || pid <= 0 || start === undefined) return undefined;
  return processStartTime(pid) === start ? pid : undefined;
}

/**
 * Takes `pidFile` for this process, or throws naming the running host
 * (`where` names the run directory in the message). A stale file is replaced.
 */
export function lockRunDir(pidFile: string, where: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(pidFile, "wx", 0o644);
      writeSync(fd, `${process.pid} ${processStartTime(process.pid) ?? ""}\n`);
      closeSync(fd);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = runningPid(pidFile);
      if (pid !== undefined) {
        throw new Error(`a host is already running on ${where} (pid ${pid})`, { cause: e });
      }
      rmSync(pidFile, { force: true });
    }
  }
  throw new Error(`cannot take the lock ${pidFile}: another host is starting`);
}

/** Gives `pidFile` up, if this process holds it. */
export function unlockRunDir(pidFile: string): void {
  if (runningPid(pidFile) === process.pid) rmSync(pidFile, { force: true });
}
