/**
 * The host daemon's privcmd socket (`<run dir>/privcmd`): what Linux's
 * `/dev/xen/privcmd` hypercall ioctl is to libxencall. A request is
 * `{id, nr, args: [a1..a5], bufs: [{n, b}...]}`, each buffer its length
 * `n` and, in base64, its bytes up to the last that is not zero (an OUT
 * buffer, such as getdomaininfolist's room for 1,024 domains, travels as
 * its length alone); the host copies the buffers into Dom0's bounce area
 * (channel.ts's layout), runs the hypercall as Dom0, and answers
 * `{id, rc, bufs}` with the buffers as the hypervisor left them, in the
 * same form, or `{id, error}` for a request it cannot run. Only
 * the socket's owner can connect (mode 0600 in a 0700 directory).
 *
 * Pages of Xen's shared with Dom0 (the trace buffers: DOMID_XEN frames)
 * are reached with `{id, mmap: [mfn...]}`, answered `{id, pages: [base64
 * or null...]}`, and written back with `{id, poke: {mfn, offset, data}}`:
 * a process cannot share the daemon's memory, so the socket's "mapping" is
 * a copy each way (xentrace reads records and writes t_buf.cons back).
 *
 * Unlike Linux's privcmd, only the toolstack's hypercalls pass: domctl,
 * sysctl, xen_version and console_io. The others act on Dom0's own kernel
 * state (its event channels, grant mappings, memory, vCPU), which belongs
 * to the host process's drivers; a remote caller could only corrupt it.
 */
import type { Socket } from "node:net";
import type { Privcmd } from "../../dom0/drivers/privcmd.js";
import { LineClient, connectUnix, UnixService, readLines, sendLine } from "../jsonl.js";
import { BOUNCE_BASE, BOUNCE_BYTES, runHypercall, type HypercallChannel } from "./channel.js";
import { DOMID_XEN, HYPERVISOR, NR_HYPERCALLS } from "../../xen/include/public/xen.js";

/** The hypercalls the socket passes (libxc's toolstack calls). */
export const PRIVCMD_SOCKET_HYPERCALLS: ReadonlySet<number> = new Set([
  HYPERVISOR.__HYPERVISOR_domctl,
  HYPERVISOR.__HYPERVISOR_sysctl,
  HYPERVISOR.__HYPERVISOR_xen_version,
  HYPERVISOR.__HYPERVISOR_console_io,
]);

export class PrivcmdServer extends UnixService {
  constructor(
    private readonly privcmd: Privcmd,
    path: string,
    private readonly log: (msg: string) => void = () => {},
  ) {
    super(path);
  }

  protected accept(s: Socket): void {
    readLines(
      s,
      (m) => sendLine(s, { id: m.id, ...this.handle(m) }),
      (why) => this.log(`privcmd: a client sent ${why}; disconnected`),
    );
  }

  private handle(m: Record<string, unknown>): Record<string, unknown> {
    if (m.mmap !== undefined || m.poke !== undefined) {
      try {
        return xenPagesRequest(this.privcmd, m);
      } catch (e) {
        return { error: (e as Error).message };
      }
    }
    const { nr, args, bufs } = m;
    if (!Number.isInteger(nr) || (nr as number) < 0 || (nr as number) >= NR_HYPERCALLS) {
      return {
        error: `privcmd: hypercall number ${JSON.stringify(nr)} is not 0..${NR_HYPERCALLS - 1}`,
      };
    }
    if (!PRIVCMD_SOCKET_HYPERCALLS.has(nr as number)) {
      const name = Object.entries(HYPERVISOR).find(([, v]) => v === nr)?.[0] ?? `hypercall ${nr}`;
      return {
        error: `privcmd: ${name} is not available over the socket (only domctl, sysctl, xen_version, console_io)`,
      };
    }
    if (
      !Array.isArray(args) ||
      args.length > 5 ||
      !args.every((a) => Number.isSafeInteger(a) && a >= 0)
    ) {
      return { error: "privcmd: args must be up to 5 non-negative integers" };
    }
    const data = Array.isArray(bufs) ? decodeBufs(bufs) : undefined;
    if (data === undefined) {
      return {
        error: `privcmd: bufs must be {n, b} (length, base64 bytes), ${BOUNCE_BYTES} bytes at most in all`,
      };
    }
    try {
      const rc = runHypercall(this.privcmd, nr as number, args as number[], data);
      return { rc, bufs: data.map(encodeBuf) };
    } catch (e) {
      return { error: (e as Error).message };
    }
  }
}

/** A buffer as the socket carries it: its length, and its bytes up to the last non-zero one. */
export function encodeBuf(b: Uint8Array): { n: number; b: string } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.length);
  // Zero chunks are skipped from the end by memcmp (an OUT buffer may be 120 KiB of zeros).
  let end = buf.length;
  while (end >= ZERO_CHUNK.length && buf.subarray(end - ZERO_CHUNK.length, end).equals(ZERO_CHUNK))
    end -= ZERO_CHUNK.length;
  while (end > 0 && buf[end - 1] === 0) end--;
  return { n: b.length, b: buf.subarray(0, end).toString("base64") };
}

const ZERO_CHUNK = Buffer.alloc(256);

/**
 * The buffers of a request (or a reply), or undefined if one is malformed
 * or they would not fit the bounce area: checked before anything is
 * allocated, so a length cannot make the daemon allocate more than that.
 */
export function decodeBufs(bufs: unknown[]): Uint8Array[] | undefined {
  let total = 0;
  for (const x of bufs) {
    const v = x as { n?: unknown; b?: unknown } | null;
    if (typeof v !== "object" || v === null || typeof v.b !== "string") return undefined;
    if (!Number.isSafeInteger(v.n) || (v.n as number) < 0) return undefined;
    total += v.n as number;
    if (total > BOUNCE_BYTES || v.b.length > Math.ceil((v.n as number) / 3) * 4) return undefined;
  }
  return bufs.map((x) => {
    const v = x as { n: number; b: string };
    const out = new Uint8Array(v.n);
    out.set(Buffer.from(v.b, "base64").subarray(0, v.n));
    return out;
  });
}

/** Most Xen pages one `mmap` request reads. */
export const MAX_MMAP_PAGES = 4096;

/** Handles `mmap` and `poke` of DOMID_XEN frames (see the file's comment). */
function xenPagesRequest(privcmd: Privcmd, m: Record<string, unknown>): Record<string, unknown> {
  if (m.mmap !== undefined) {
    const mfns = m.mmap;
    if (
      !Array.isArray(mfns) ||
      mfns.length > MAX_MMAP_PAGES ||
      !mfns.every((x) => Number.isSafeInteger(x) && x >= 0)
    )
      return { error: `privcmd: mmap takes up to ${MAX_MMAP_PAGES} frame numbers` };
    const { pages } = privcmd.mmapBatchV2(DOMID_XEN, mfns as number[]);
    return { pages: pages.map((p) => (p ? Buffer.from(p).toString("base64") : null)) };
  }
  const p = m.poke as Record<string, unknown> | null;
  if (typeof p !== "object" || p === null)
    return { error: "privcmd: poke needs {mfn, offset, data}" };
  const { mfn, offset, data } = p;
  if (!Number.isSafeInteger(mfn) || !Number.isSafeInteger(offset) || typeof data !== "string")
    return { error: "privcmd: poke needs {mfn, offset, data}" };
  const bytes = Buffer.from(data, "base64");
  const page = privcmd.mmapBatchV2(DOMID_XEN, [mfn as number]).pages[0];
  if (!page) return { error: `privcmd: frame ${String(mfn)} is not a page of Xen's` };
  if ((offset as number) < 0 || (offset as number) + bytes.length > page.length)
    return { error: "privcmd: poke past the page" };
  page.set(bytes, offset as number);
  return { ok: true };
}

/** libxencall over the privcmd socket. */
export class PrivcmdClient implements HypercallChannel {
  readonly bounceBase = BOUNCE_BASE;
  private constructor(private readonly lines: LineClient) {}

  static async connect(path: string): Promise<PrivcmdClient> {
    return new PrivcmdClient(new LineClient(await connectUnix(path, "privcmd"), "privcmd"));
  }

  async call(nr: number, args: number[], bufs: Uint8Array[]): Promise<number> {
    const r = await this.lines.request({ nr, args, bufs: bufs.map(encodeBuf) });
    if (typeof r.error === "string") throw new Error(r.error);
    const out = Array.isArray(r.bufs) ? decodeBufs(r.bufs) : undefined;
    if (!out || out.length !== bufs.length)
      throw new Error("privcmd: the host's reply has no buffers");
    bufs.forEach((b, i) => b.set(out[i]!.subarray(0, b.length)));
    return Number(r.rc);
  }

  /** Copies of DOMID_XEN frames `mfns` (undefined where a frame is not Xen's). */
  async mmapXen(mfns: number[]): Promise<(Uint8Array | undefined)[]> {
    const r = await this.lines.request({ mmap: mfns });
    if (typeof r.error === "string") throw new Error(r.error);
    return (r.pages as (string | null)[]).map((p) =>
      p === null ? undefined : new Uint8Array(Buffer.from(p, "base64")),
    );
  }

  /** Writes `data` at `offset` of DOMID_XEN frame `mfn`. */
  async pokeXen(mfn: number, offset: number, data: Uint8Array): Promise<void> {
    const r = await this.lines.request({
      poke: { mfn, offset, data: Buffer.from(data).toString("base64") },
    });
    if (typeof r.error === "string") throw new Error(r.error);
  }

  close(): void {
    this.lines.close();
  }
}
