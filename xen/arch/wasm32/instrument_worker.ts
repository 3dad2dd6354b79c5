/**
 * Worker thread that instruments one kernel: instrumentation takes from a
 * fraction of a second to seconds and must not stall the host's event loop.
 */
import { parentPort, workerData } from "node:worker_threads";
import { instrumentKernel, type InstrumentOptions } from "./instrument.js";

const { bytes, options } = workerData as { bytes: Uint8Array; options: InstrumentOptions };
try {
  const out = instrumentKernel(bytes, options);
  parentPort!.postMessage({ ok: true, out });
} catch (e) {
  parentPort!.postMessage({ ok: false, error: (e as Error).message });
}
