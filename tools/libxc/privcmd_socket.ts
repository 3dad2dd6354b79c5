/**
 * The host daemon's privcmd socket (`<run dir>/privcmd`): what Linux's
 * `/dev/xen/privcmd` hypercall ioctl is to libxencall. A request is
 * `{id, nr, args: [a1..a5], bufs: [base64...]}`; the host copies the
 * buffers into Dom0's bounce area (channel.ts's layout), runs the
 * hypercall as Dom0, and answers `{id, rc, bufs}` with the buffers as the
 * hypervisor left them, or `{id, error}` for a request it cannot run. Only
 * the socket's owner can connect (mode 0600 in a 0700 directory).
 *
 * Unlike Linux's privcmd, only the toolstack's hypercalls pass: domctl,
 * sysctl, xen_version and console_io. The others act on Dom0's own kernel
 * state (its event channels, grant mappings, memory, vCPU), which belongs
 * to the host process's drivers; a remote caller could only corrupt it.
 */
import type { Socket } from "node:net";
import type { Privcmd } from "../../dom0/drivers/privcmd.js";
import { LineClient, connectUnix, UnixService, readLines, sendLine } from "../jsonl.js";
import { BOUNCE_BASE, runHypercall, type HypercallChannel } from "./channel.js";
import { HYPERVISOR, NR_HYPERCALLS } from "../../xen/include/public/xen.js";

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
    if (!Array.isArray(bufs) || !bufs.every((b) => typeof b === "string")) {
      return { error: "privcmd: bufs must be base64 strings" };
    }
    const data = (bufs as string[]).map((b) => new Uint8Array(Buffer.from(b, "base64")));
    try {
      const rc = runHypercall(this.privcmd, nr as number, args as number[], data);
      return { rc, bufs: data.map((b) => Buffer.from(b).toString("base64")) };
    } catch (e) {
      return { error: (e as Error).message };
    }
  }
}

/** libxencall over the privcmd socket. */
export class PrivcmdClient implements HypercallChannel {
  readonly bounceBase = BOUNCE_BASE;
  private constructor(private readonly lines: LineClient) {}

  static async connect(path: string): Promise<PrivcmdClient> {
    return new PrivcmdClient(new LineClient(await connectUnix(path, "privcmd"), "privcmd"));
  }

  async call(nr: number, args: number[], bufs: Uint8Array[]): Promise<number> {
    const r = await this.lines.request({
      nr,
      args,
      bufs: bufs.map((b) => Buffer.from(b).toString("base64")),
    });
    if (typeof r.error === "string") throw new Error(r.error);
    const out = r.bufs as string[];
    bufs.forEach((b, i) => b.set(Buffer.from(out[i] ?? "", "base64").subarray(0, b.length)));
    return Number(r.rc);
  }

  close(): void {
    this.lines.close();
  }
}
