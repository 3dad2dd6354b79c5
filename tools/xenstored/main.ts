#!/usr/bin/env node
/**
 * `xenstored`: the daemon alone, serving its unix socket (no guests), for
 * Xen's own C clients and tests. The host (tools/host) runs the same daemon
 * as a Dom0 service with guest rings.
 *
 *   node dist/tools/xenstored/main.js [--socket PATH] [--verbose]
 *
 * The socket defaults to `$TSXEN_RUN_DIR/xenstored/socket`. SIGINT or
 * SIGTERM stop it and remove the socket.
 */
import { parseCommandLine } from "../cli.js";
import { xenstoredSocket } from "../rundir.js";
import { Xenstored } from "./xenstored.js";
import { XsSocketServer } from "./socket.js";

const { values } = parseCommandLine(
  "xenstored",
  {
    options: {
      socket: { type: "string" },
      verbose: { type: "boolean", short: "v", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  },
  "xenstored --help",
);
if (values.help) {
  console.log("usage: xenstored [--socket PATH] [--verbose]");
  process.exit(0);
}
const path = values.socket ?? xenstoredSocket();
const d = new Xenstored(undefined, (line) => {
  if (values.verbose) console.error(`xenstored: ${line}`);
});
const server = new XsSocketServer(d, path);
try {
  await server.listen();
} catch (e) {
  console.error(`xenstored: cannot listen on ${path}: ${(e as Error).message}`);
  process.exit(1);
}
console.error(`xenstored: listening on ${path}`);
const stop = (): void => {
  void server.close().then(() => process.exit(0));
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
