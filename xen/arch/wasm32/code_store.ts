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
import { MAX_HVM_IMAGE_BYTES, loadHvmImage, type HvmImage } from "./hvm_image.js";
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

/** What `lookupHvm` finds for an HVM program. */
export type HvmBindResult =
  | { kind: "ready"; image: HvmImage }
  | { kind: "absent" }
  | { kind: "checking" }
  | { kind: "refused"; why: string };

/** Most HVM programs kept prepared (the least recently bound go first). */
const MAX_HVM_PROGRAMS = 64;

export class CodeStore {
  private readonly uploads = new Map<string, Upload>();
  private readonly checking = new Set<string>();
  private readonly refusals = new Map<string, string>();
  /**
   * HVM programs (WASI modules, hvm_image.ts), by their key: the sha256 of
   * their bytes as given, and whether they were made saveable.
   */
  private readonly hvm = new Map<string, HvmImage>();

  private static hvmKey(hash: string, saveable: boolean): string {
    return `hvm:${hash}:${saveable ? "saveable" : "plain"}`;
  }

  /** What the store has for HVM program `hash` in its flavour. */
  lookupHvm(hash: string, saveable: boolean): HvmBindResult {
    const key = CodeStore.hvmKey(hash, saveable);
    const image = this.hvm.get(key);
    if (image) {
      // Most recently bound last.
      this.hvm.delete(key);
      this.hvm.set(key, image);
      return { kind: "ready", image };
    }
    if (this.checking.has(key)) return { kind: "checking" };
    const why = this.refusals.get(key);
    if (why !== undefined) return { kind: "refused", why };
    return { kind: "absent" };
  }

  /**
   * Takes an HVM program the hypervisor's compiler prepared in this process
   * (loadHvmImageFile for the toolstack, which names the file): kept under
   * its content hash as if its bytes had been uploaded.
   */
  adoptHvm(image: HvmImage): void {
    this.keepHvm(CodeStore.hvmKey(image.hash, image.saveable), image);
  }

  private keepHvm(key: string, image: HvmImage): void {
    this.hvm.delete(key);
    this.hvm.set(key, image);
    if (this.hvm.size > MAX_HVM_PROGRAMS) this.hvm.delete(this.hvm.keys().next().value!);
  }

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
  upload(
    hash: string,
    size: number,
    offset: number,
    chunk: Uint8Array,
    /** An HVM program (XEN_DOMCTL_WASM32_MODULE_hvm), made saveable or not. */
    hvm?: { saveable: boolean },
  ): number {
    const key = hvm ? CodeStore.hvmKey(hash, hvm.saveable) : hash;
    const ready = hvm ? this.hvm.has(key) : this.lookup(hash).kind === "ready";
    if (ready || this.checking.has(key)) return 0;
    if (!Number.isSafeInteger(size) || size <= 0) return -XenErrno.EINVAL;
    if (size > (hvm ? MAX_HVM_IMAGE_BYTES : MAX_KERNEL_BYTES)) return -XenErrno.E2BIG;
    let u = this.uploads.get(key);
    if (!u) {
      if (offset !== 0) return -XenErrno.EINVAL;
      if (this.uploads.size >= MAX_UPLOADS) return -XenErrno.EBUSY;
      u = { size, bytes: new Uint8Array(size), filled: 0 };
      this.uploads.set(key, u);
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
      this.uploads.delete(key);
      return -XenErrno.EINVAL;
    }
    u.bytes.set(chunk, offset);
    u.filled += chunk.length;
    if (u.filled < size) return 0;
    this.uploads.delete(key);
    if (createHash("sha256").update(u.bytes).digest("hex") !== hash) return -XenErrno.EINVAL;
    this.refusals.delete(key);
    this.checking.add(key);
    const loaded: Promise<unknown> = hvm
      ? loadHvmImage(u.bytes, hvm.saveable).then((image) => this.keepHvm(key, image))
      : loadKernel(u.bytes);
    loaded.then(
      () => this.checking.delete(key),
      (e: Error) => {
        this.checking.delete(key);
        this.refusals.set(key, e.message);
        if (this.refusals.size > MAX_REFUSALS) {
          this.refusals.delete(this.refusals.keys().next().value!);
        }
      },
    );
    return 0;
  }
}
