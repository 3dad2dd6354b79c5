/**
 * The hypervisor's store of guest code (docs/arch-wasm32.md, "Building a
 * domain"). On x86 a PV kernel is bytes that the domain builder copies into
 * the guest's pages; on wasm32 code is a module outside linear memory, and
 * only the hypervisor may turn one into something a vCPU runs: it checks and
 * instruments it (kernel.ts, instrument.ts), then compiles it. The builder
 * hands a module over with XEN_DOMCTL_wasm32_module: `upload` sends its
 * bytes in chunks (the hypercall buffers are small), `bind` gives it to a
 * domain by its sha256. Modules are kept by content, so a module uploaded
 * once serves every later domain that runs the same bytes.
 *
 * A privileged caller is trusted with what it uploads, as Dom0 is trusted
 * with what it writes into a new guest; the bounds here keep a buggy one
 * from exhausting the host: a module is at most MAX_KERNEL_BYTES, at most
 * MAX_UPLOADS uploads are in flight, and chunks arrive in order.
 */
import { createHash } from "node:crypto";
import { MAX_KERNEL_BYTES, compiledKernel, loadKernel, type Kernel } from "./kernel.js";
import { XenErrno } from "../../include/public/errno.js";

/** Uploads in flight at once; another gets -EBUSY. */
export const MAX_UPLOADS = 4;
/** Refusals remembered for `bind` to report (the oldest go first). */
const MAX_REFUSALS = 64;

interface Upload {
  readonly size: number;
  readonly bytes: Uint8Array;
  filled: number;
}

/** What `bind` finds for a hash. */
export type BindResult =
  | { kind: "ready"; kernel: Kernel }
  | { kind: "absent" }
  | { kind: "checking" }
  | { kind: "refused"; why: string };

export class CodeStore {
  private readonly uploads = new Map<string, Upload>();
  private readonly checking = new Set<string>();
  private readonly refusals = new Map<string, string>();

  /** What the store has for module `hash` (hex sha256 of its bytes as built). */
  lookup(hash: string): BindResult {
    const kernel = compiledKernel(hash);
    if (kernel) return { kind: "ready", kernel };
    if (this.checking.has(hash)) return { kind: "checking" };
    const why = this.refusals.get(hash);
    if (why !== undefined) return { kind: "refused", why };
    return { kind: "absent" };
  }

  /**
   * Takes bytes `offset`.. of module `hash` (`size` bytes in all). Chunks
   * come in order, from 0 (a chunk of bytes already received is taken for
   * what it adds, so that two builders may upload one module at once); the
   * last one starts the module's check,
   * whose outcome `lookup` reports. Returns 0 or a negative Xen errno:
   * -EINVAL for a bad size, offset or a hash the bytes do not have, -E2BIG
   * past MAX_KERNEL_BYTES, -EBUSY with MAX_UPLOADS uploads in flight.
   */
  upload(hash: string, size: number, offset: number, chunk: Uint8Array): number {
    if (this.lookup(hash).kind === "ready" || this.checking.has(hash)) return 0;
    if (!Number.isSafeInteger(size) || size <= 0) return -XenErrno.EINVAL;
    if (size > MAX_KERNEL_BYTES) return -XenErrno.E2BIG;
    let u = this.uploads.get(hash);
    if (!u) {
      if (offset !== 0) return -XenErrno.EINVAL;
      if (this.uploads.size >= MAX_UPLOADS) return -XenErrno.EBUSY;
      u = { size, bytes: new Uint8Array(size), filled: 0 };
      this.uploads.set(hash, u);
    }
    if (offset < u.filled && u.size === size) {
      // Bytes already received (two builders uploading the same module at
      // once send the same chunks): only what is new is taken.
      const skip = u.filled - offset;
      if (skip >= chunk.length) return 0;
      chunk = chunk.subarray(skip);
      offset = u.filled;
    }
    if (u.size !== size || offset !== u.filled || offset + chunk.length > size) {
      // A gap, or another size: the upload starts again from nothing.
      this.uploads.delete(hash);
      return -XenErrno.EINVAL;
    }
    u.bytes.set(chunk, offset);
    u.filled += chunk.length;
    if (u.filled < size) return 0;
    this.uploads.delete(hash);
    if (createHash("sha256").update(u.bytes).digest("hex") !== hash) return -XenErrno.EINVAL;
    this.refusals.delete(hash);
    this.checking.add(hash);
    loadKernel(u.bytes).then(
      () => this.checking.delete(hash),
      (e: Error) => {
        this.checking.delete(hash);
        this.refusals.set(hash, e.message);
        if (this.refusals.size > MAX_REFUSALS) {
          this.refusals.delete(this.refusals.keys().next().value!);
        }
      },
    );
    return 0;
  }
}
