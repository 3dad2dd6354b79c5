/**
 * Command-line parsing for tsxen's commands: node's parseArgs, with a
 * mistake on the command line reported as one line naming the command and
 * the option (exit status 2) rather than a stack trace.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** Parses `config`; `help` is the command that shows the usage, if there is one. */
export function parseCommandLine<T extends ParseArgsConfig>(
  prog: string,
  config: T,
  help?: string,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    console.error(`${prog}: ${(e as Error).message}${help ? ` (see ${help})` : ""}`);
    process.exit(2);
  }
}
