/**
 * The instrumenter thread: instruments kernels on request, so that
 * instrumentation (a fraction of a second to seconds each) never stalls the
 * host's event loop. Requests carry an id that the reply echoes.
 */
import { parentPort } from "node:worker_threads";
import { instrumentKernel, type InstrumentOptions } from "./instrument.js";

parentPort!.on("message", (msg: { id: number; bytes: Uint8Array; options: InstrumentOptions }) => {
  try {
    parentPort!.postMessage({
      id: msg.id,
      ok: true,
      out: instrumentKernel(msg.bytes, msg.options),
    });
  } catch (e) {
    const error = (e as Error).message;
    parentPort!.postMessage({ id: msg.id, ok: false, error });
    // Binaryen cannot be used again after it aborts: end this thread, and
    // the host starts a new one for the next kernel.
    if (/^Aborted/.test(error)) process.exit(1);
  }
});
