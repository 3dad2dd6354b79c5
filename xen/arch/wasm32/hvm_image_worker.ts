/**
 * The HVM program compiler's thread: checks, hashes and compiles a WASI
 * program (hvm_image.ts) away from the main thread and hands back the
 * compiled module, which crosses threads without being compiled again.
 */
import { parentPort } from "node:worker_threads";
import { compileHvmImage } from "./hvm_image.js";

parentPort!.on("message", (m: { id: number; bytes: Uint8Array; saveable: boolean }) => {
  compileHvmImage(m.bytes, m.saveable).then(
    (image) => parentPort!.postMessage({ id: m.id, image }),
    (e: Error) => parentPort!.postMessage({ id: m.id, error: e.message }),
  );
});
