/**
 * The JavaScript engine's settings for a process that hosts the hypervisor
 * (the daemon, `npm start`, the benchmarks and tests that make a Host):
 * set when host.ts is first loaded, before the hypervisor's code first runs.
 *
 * `--always-sparkplug`: V8 compiles each function to baseline machine code
 * (Sparkplug) the first time it runs, instead of interpreting its bytecode
 * until it has run often. Much of a hypervisor's work runs rarely but must
 * be quick when it does: a migration's stop and start (the guest's
 * downtime) runs each function once per migration, and interpreted it took
 * about twice as long (docs/migration.md, "Figures"). The cost is the
 * baseline code of the functions that ran, a few MiB.
 */
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--always-sparkplug");
