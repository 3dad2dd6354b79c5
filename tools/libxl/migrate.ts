/**
 * Live migration (Xen's `tools/xl/xl_migrate.c` and libxl's live suspend):
 * `xl migrate` runs `<sshcommand> <host> xl migrate-receive` and the two
 * speak over the child's stdin and stdout. docs/migration.md walks through
 * it.
 *
 * The conversation, as Xen's (the fixed messages are Xen's, byte for byte;
 * all but the banner are sent with their terminating NUL):
 *
 * 1. The receiver sends its banner; the sender sends the stream: xl's
 *    header and config, libxl's stream with libxc's live stream inside it
 *    (rounds of pages while the guest runs, then the last round with the
 *    guest stopped, the context, END).
 * 2. The receiver has built the domain, paused, as `<name>--incoming`; it
 *    says "domain received, ready to unpause".
 * 3. The sender renames its domain `<name>--migratedaway` and says "domain
 *    is yours, you are cleared to unpause": from here on it may not run
 *    its copy unless told to.
 * 4. The receiver renames its domain `<name>`, unpauses it and reports
 *    "my copy unpause results are as follows" and a status byte. 0: the
 *    sender destroys its copy. Otherwise the receiver destroys its copy and
 *    gives the sender permission to resume.
 *
 * Any failure before step 3 leaves the guest running on the sender (it is
 * unpaused again) and nothing on the receiver, which destroys what it
 * built when the stream breaks.
 *
 * Between `xl` and the host daemon (which holds the domains), the
 * conversation goes over the libxl socket: after the request line, the
 * connection carries frames (Frames below): the peer's bytes both ways,
 * the daemon's log lines for xl's stderr, and the result.
 */
import type { Socket } from "node:net";
import type { Writable } from "node:stream";
import {
  LIBXL_REC_END,
  LIBXL_REC_LIBXC_CONTEXT,
  StreamError,
  type SequentialSource,
} from "../libxc/xc_sr.js";
import type { LiveSaveOptions, LiveSaveStats } from "../libxc/xc_dom.js";
import {
  checkLibxlHeader,
  checkXlConfig,
  checkXlHeader,
  streamEpilogue,
  streamPrologue,
  type Frontends,
  type SavedWatch,
} from "./save.js";
import type { XlDomainConfig } from "./config.js";

/** xl's fixed messages (xl.h). */
export const MIGRATE_RECEIVER_BANNER = "xl migration receiver ready, send binary domain data.\n";
export const MIGRATE_RECEIVER_READY = "domain received, ready to unpause\0";
export const MIGRATE_PERMISSION_TO_GO = "domain is yours, you are cleared to unpause\0";
export const MIGRATE_REPORT = "my copy unpause results are as follows\0";

/** libxl's ERROR_FAIL, the status a receiver reports (negated) when it cannot start its copy. */
const ERROR_FAIL = -3;

/** The daemon's side of a migration: the peer's bytes, and xl's stderr. */
export interface MigrationChannel extends SequentialSource {
  write(chunks: readonly Uint8Array[]): Promise<void>;
  log(line: string): void;
}

/** What the sender needs of libxl (domain.ts implements it). */
export interface MigrationSender {
  /** The domain's name, config and module; throws when it cannot migrate (and says why). */
  describe(domid: number): {
    name: string;
    config: XlDomainConfig;
    json: Record<string, unknown>;
    image: { sha256: Uint8Array; bytes: Uint8Array };
    frontends: Frontends;
    watches: SavedWatch[];
  };
  saveLive(
    domid: number,
    image: { sha256: Uint8Array; bytes: Uint8Array },
    sink: (chunks: Uint8Array[]) => Promise<void>,
    opts: LiveSaveOptions,
  ): Promise<LiveSaveStats>;
  /** Stops the domain for the last round: paused, its backends detached from its rings. */
  pause(domid: number): Promise<void>;
  /** Undoes pause: the backends attach again and the domain runs. */
  unpause(domid: number): Promise<void>;
  rename(domid: number, name: string): void;
  destroy(domid: number): void;
}

/** What the receiver needs of libxl. */
export interface MigrationReceiver {
  /**
   * Builds the domain from libxc's stream, paused, named `name`, its devices
   * attached to the rings `frontends` name; its domid.
   */
  restoreStream(
    config: XlDomainConfig,
    name: string,
    src: SequentialSource,
    frontends: Frontends,
    watches: SavedWatch[],
  ): Promise<number>;
  unpause(domid: number): Promise<void>;
  rename(domid: number, name: string): void;
  destroy(domid: number): void;
}

export interface MigrateOptions {
  /** --debug: every page again after the last round, checked by the receiver. */
  debug: boolean;
  maxIters: number;
  minRemaining: number;
}

/** Reads `msg` (Xen's migrate_read_fixedmessage); throws naming `what`. */
async function expect(
  ch: MigrationChannel,
  msg: string,
  what: string,
  stream: string,
): Promise<void> {
  const want = Buffer.from(msg, "latin1");
  let got: Buffer;
  try {
    got = await ch.read(want.length);
  } catch (e) {
    throw new Error(`${stream}: ${(e as Error).message} (reading the ${what})`, { cause: e });
  }
  if (!got.equals(want)) throw new Error(`${stream} contained unexpected data instead of ${what}`);
}

/**
 * xl migrate's sender (migrate_domain): the domain goes to the peer, live,
 * and is destroyed here once the peer runs it. Throws with xl's message
 * when it failed; the domain then runs here again (or, after the point of
 * no return, the message says that both ends must be checked). Resolves
 * with the rounds, the downtime as the sender sees it (from the pause to
 * the peer's report) and when the pause began (`stoppedAt`, ms since the
 * epoch: with the receiver's `startedAt`, the guest's own downtime).
 */
export async function sendDomain(
  x: MigrationSender,
  domid: number,
  ch: MigrationChannel,
  opts: MigrateOptions,
): Promise<{ stats: LiveSaveStats; downtimeMs: number; stoppedAt: number }> {
  const d = x.describe(domid);
  const peer = "migration receiver stream";
  await expect(ch, MIGRATE_RECEIVER_BANNER, "banner", peer);
  let stopped = false;
  let stoppedAt = 0;
  const resumeHere = async (why: string): Promise<never> => {
    ch.log(why);
    ch.log("Migration failed, resuming at sender.");
    if (stopped) await x.unpause(domid).catch(() => {});
    throw new Error("Migration failed, resuming at sender.");
  };
  let stats: LiveSaveStats;
  try {
    await ch.write(
      streamPrologue(
        "migration stream",
        d.config,
        d.json,
        (l) => ch.log(l),
        d.frontends,
        d.watches,
      ),
    );
    stats = await x.saveLive(domid, d.image, (c) => ch.write(c), {
      maxIters: opts.maxIters,
      minRemaining: opts.minRemaining,
      verify: opts.debug,
      trailer: [streamEpilogue()],
      suspend: async () => {
        // The downtime starts as the pause does: stopping the devices is part of it.
        stoppedAt = performance.now();
        await x.pause(domid);
        stopped = true;
      },
    });
  } catch (e) {
    return resumeHere(
      `migration sender: libxl_domain_suspend failed (rc=${ERROR_FAIL}): ${(e as Error).message}`,
    );
  }
  try {
    await expect(ch, MIGRATE_RECEIVER_READY, "ready message", peer);
  } catch (e) {
    return resumeHere((e as Error).message);
  }
  ch.log("migration sender: Target has acknowledged transfer.");
  const away = `${d.name}--migratedaway`;
  try {
    x.rename(domid, away);
  } catch (e) {
    return resumeHere((e as Error).message);
  }
  // The point of no return: once "go" may have reached the receiver, this
  // copy must not run unless the receiver gives it back.
  ch.log("migration sender: Giving target permission to start.");
  let status: number;
  try {
    await ch.write([Buffer.from(MIGRATE_PERMISSION_TO_GO, "latin1")]);
    await expect(ch, MIGRATE_REPORT, "success/failure report message", peer);
    status = (await ch.read(1))[0]!;
  } catch (e) {
    ch.log((e as Error).message);
    throw new Error(
      "** Migration failed during final handshake **\n" +
        "Domain state is now undefined !\n" +
        "Please CHECK AT BOTH ENDS for running instances, before renaming and\n" +
        " resuming at most one instance.  Two simultaneous instances of the domain\n" +
        " would probably result in SEVERE DATA LOSS and it is now your\n" +
        " responsibility to avoid that.  Sorry.",
      { cause: e },
    );
  }
  if (status !== 0) {
    ch.log(`migration sender: Target reports startup failure (status code ${status}).`);
    await expect(ch, MIGRATE_PERMISSION_TO_GO, "permission for sender to resume", peer);
    ch.log("migration sender: Trying to resume at our end.");
    x.rename(domid, d.name);
    await x.unpause(domid);
    ch.log("migration sender: Resumed OK.");
    throw new Error("Migration failed due to problems at target.");
  }
  ch.log("migration sender: Target reports successful startup.");
  const downtimeMs = performance.now() - stoppedAt;
  x.destroy(domid);
  ch.log("Migration successful.");
  return { stats, downtimeMs, stoppedAt: performance.timeOrigin + stoppedAt };
}

/**
 * xl migrate-receive (migrate_receive): the domain from the peer's stream,
 * built paused as `<name>--incoming`, started as `<name>` once the sender
 * says so. Resolves with its domid and when it was unpaused (`startedAt`,
 * ms since the epoch); throws with xl's message, having destroyed what it
 * built.
 */
export async function receiveDomain(
  x: MigrationReceiver,
  ch: MigrationChannel,
  opts: { paused: boolean },
): Promise<{ domid: number; startedAt: number }> {
  ch.log("migration target: Ready to receive domain.");
  await ch.write([Buffer.from(MIGRATE_RECEIVER_BANNER, "latin1")]);
  const where = "<incoming migration stream>";
  const fail = (what: string, off: number): never => {
    throw new StreamError(`libxl: ${where}: ${what} at offset ${off}`);
  };
  let config: XlDomainConfig;
  let domid: number;
  try {
    const optLen = checkXlHeader(await ch.read(48), fail);
    ch.log(`Loading new save file ${where} (new xl fmt info 0x3/0x0/${optLen})`);
    let frontends: Frontends;
    let watches: SavedWatch[];
    ({ config, frontends, watches } = checkXlConfig(await ch.read(optLen), fail));
    ch.log(" Savefile contains xl domain config in JSON format");
    const at = ch.offset;
    checkLibxlHeader(await ch.read(16), at, fail);
    const rec = async (): Promise<number> => {
      const o = ch.offset;
      const h = await ch.read(8);
      if (h.readUInt32LE(4) !== 0) fail("a libxl record with a body", o);
      return h.readUInt32LE(0);
    };
    if ((await rec()) !== LIBXL_REC_LIBXC_CONTEXT) fail("no LIBXC_CONTEXT record", at + 16);
    domid = await x.restoreStream(config, `${config.name}--incoming`, ch, frontends, watches);
    try {
      if ((await rec()) !== LIBXL_REC_END) fail("libxl's stream has no END", ch.offset - 8);
    } catch (e) {
      x.destroy(domid);
      throw e;
    }
  } catch (e) {
    ch.log((e as Error).message);
    ch.log(`migration target: Domain creation failed (code ${ERROR_FAIL}).`);
    throw new Error(`migration target: Domain creation failed (code ${ERROR_FAIL}).`, {
      cause: e,
    });
  }
  ch.log("migration target: Transfer complete, requesting permission to start domain.");
  let rc = 0;
  let startedAt = 0;
  try {
    await ch.write([Buffer.from(MIGRATE_RECEIVER_READY, "latin1")]);
    await expect(ch, MIGRATE_PERMISSION_TO_GO, "GO message", "migration stream");
    ch.log("migration target: Got permission, starting domain.");
    x.rename(domid, config.name);
    if (!opts.paused) await x.unpause(domid);
    startedAt = performance.timeOrigin + performance.now();
    ch.log("migration target: Domain started successsfully.");
  } catch (e) {
    ch.log((e as Error).message);
    rc = ERROR_FAIL;
  }
  try {
    await ch.write([Buffer.from(MIGRATE_REPORT, "latin1"), Buffer.from([-rc & 0xff])]);
  } catch (e) {
    // The sender is gone: it will not run its copy (it said go, or broke off
    // before); ours is the one left, unless ours failed.
    if (rc !== 0) x.destroy(domid);
    throw e;
  }
  if (rc !== 0) {
    ch.log("migration target: Failure, destroying our copy.");
    x.destroy(domid);
    ch.log("migration target: Cleanup OK, granting sender permission to resume.");
    await ch.write([Buffer.from(MIGRATE_PERMISSION_TO_GO, "latin1")]).catch(() => {});
    throw new Error("migration target: Failure, destroying our copy.");
  }
  return { domid, startedAt };
}

/**
 * The frames on the libxl socket once a migration call has begun: a type
 * byte, a 32-bit little-endian length, the payload.
 */
export const FRAME_DATA = 0x44; // 'D': the peer's bytes (either way)
export const FRAME_EOF = 0x45; // 'E': the peer's stream ended (xl → daemon)
export const FRAME_LOG = 0x4c; // 'L': a line for xl's stderr (daemon → xl)
export const FRAME_RESULT = 0x52; // 'R': the outcome, JSON (daemon → xl), last
/** Largest frame payload: the stream goes in pieces of at most this. */
export const MAX_FRAME = 1024 * 1024;
/** Bytes of the peer's stream the daemon holds before it stops reading. */
const MAX_QUEUED = 16 * 1024 * 1024;

/** One frame's bytes. */
export function frame(type: number, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(5);
  h[0] = type;
  h.writeUInt32LE(payload.length, 1);
  return Buffer.concat([h, payload]);
}

/** Bytes as they came, in pieces, taken from the front: a piece is copied once, when taken. */
class ByteQueue {
  private readonly parts: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.parts.push(b);
    this.length += b.length;
  }

  /** Puts `b` back in front (bytes taken too early). */
  unshift(b: Buffer): void {
    this.parts.unshift(b);
    this.length += b.length;
  }

  /** The first `n` bytes (at most `length`), removed. */
  take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const head = this.parts[0]!;
    if (head.length >= n) {
      // Within one piece: a view, no copy.
      if (head.length === n) this.parts.shift();
      else this.parts[0] = head.subarray(n);
      this.length -= n;
      return head.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const h = this.parts[0]!;
      const t = Math.min(h.length, n - got);
      h.copy(out, got, 0, t);
      got += t;
      if (t === h.length) this.parts.shift();
      else this.parts[0] = h.subarray(t);
    }
    this.length -= n;
    return out;
  }

  clear(): void {
    this.parts.length = 0;
    this.length = 0;
  }
}

/**
 * Reads frames from `s` (after `initial`, bytes already read past the
 * request line) and calls `onFrame` with each; a frame longer than
 * MAX_FRAME or of an unknown type is a protocol error: `onError`, and the
 * socket is closed.
 */
export function readFrames(
  s: Socket,
  initial: Buffer,
  onFrame: (type: number, payload: Buffer) => void,
  onError: (why: string) => void,
): void {
  // The chunks as they came: a frame is joined once, when it is whole.
  const q = new ByteQueue();
  q.push(initial);
  let stopped = false;
  const pump = (): void => {
    while (!stopped && q.length >= 5) {
      const h = q.take(5);
      const type = h[0]!;
      const len = h.readUInt32LE(1);
      if (![FRAME_DATA, FRAME_EOF, FRAME_LOG, FRAME_RESULT].includes(type) || len > MAX_FRAME) {
        stopped = true;
        q.clear();
        onError(`a bad frame (type 0x${type.toString(16)}, ${len} bytes)`);
        s.destroy();
        return;
      }
      if (q.length < len) {
        // Not whole yet: the header goes back until the rest comes.
        q.unshift(h);
        return;
      }
      onFrame(type, q.take(len));
    }
  };
  s.on("data", (chunk: Buffer) => {
    if (stopped) return;
    q.push(chunk);
    pump();
  });
  pump();
}

/** Writes `b` to `s`, waiting for it to drain when it holds much. */
export async function writeDrained(s: Writable, b: Uint8Array): Promise<void> {
  if (s.destroyed) throw new Error("the connection is closed");
  if (!s.write(b))
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        s.off("drain", done);
        s.off("close", closed);
        resolve();
      };
      const closed = (): void => {
        s.off("drain", done);
        reject(new Error("the connection closed"));
      };
      s.once("drain", done);
      s.once("close", closed);
    });
}

/**
 * The daemon's MigrationChannel over the libxl connection `s`: the peer's
 * bytes arrive in DATA frames (at most MAX_QUEUED held: the socket is not
 * read while more wait), ours go out in DATA frames, log lines in LOG
 * frames. `finish` sends the RESULT frame and ends the connection.
 */
export class SocketChannel implements MigrationChannel {
  private readonly queue = new ByteQueue();
  private ended: string | undefined;
  private waiter: (() => void) | undefined;
  offset = 0;

  get buffered(): number {
    return this.queue.length;
  }

  constructor(
    private readonly s: Socket,
    initial: Buffer,
    private readonly logLocal: (line: string) => void,
  ) {
    readFrames(
      s,
      initial,
      (type, payload) => {
        if (type === FRAME_DATA) {
          this.queue.push(Buffer.from(payload));
          if (this.queue.length > MAX_QUEUED) s.pause();
        } else if (type === FRAME_EOF) this.ended ??= "the peer's stream ended";
        else this.ended ??= "xl sent a frame the daemon does not take";
        this.wake();
      },
      (why) => {
        this.logLocal(`libxl: migration: xl sent ${why}; disconnected`);
        this.ended ??= `xl sent ${why}`;
        this.wake();
      },
    );
    s.once("close", () => {
      this.ended ??= "xl went away";
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  async read(n: number): Promise<Buffer> {
    while (this.queue.length < n) {
      if (this.ended !== undefined)
        throw new StreamError(`${this.ended} at offset ${this.offset + this.queue.length}`);
      this.s.resume();
      await new Promise<void>((r) => (this.waiter = r));
    }
    const out = this.queue.take(n);
    this.offset += n;
    if (this.queue.length <= MAX_QUEUED) this.s.resume();
    return out;
  }

  async write(chunks: readonly Uint8Array[]): Promise<void> {
    // A peer whose stream has ended (it died, or its transport did) takes nothing more.
    if (this.ended !== undefined) throw new StreamError(`the peer is gone: ${this.ended}`);
    // Frames of up to MAX_FRAME, each one buffer: a page record's pieces go together.
    let pending: Uint8Array[] = [];
    let size = 0;
    const flush = async (): Promise<void> => {
      if (size === 0) return;
      const h = Buffer.alloc(5);
      h[0] = FRAME_DATA;
      h.writeUInt32LE(size, 1);
      const b = Buffer.concat([h, ...pending]);
      pending = [];
      size = 0;
      await writeDrained(this.s, b);
    };
    for (const whole of chunks)
      for (let o = 0; o < whole.length; o += MAX_FRAME) {
        const c = whole.subarray(o, o + MAX_FRAME);
        if (size + c.length > MAX_FRAME) await flush();
        pending.push(c);
        size += c.length;
      }
    await flush();
  }

  log(line: string): void {
    if (!this.s.destroyed) this.s.write(frame(FRAME_LOG, Buffer.from(line)));
  }

  /** Sends the outcome and closes. */
  finish(result: Record<string, unknown>): void {
    if (this.s.destroyed) return;
    this.s.end(frame(FRAME_RESULT, Buffer.from(JSON.stringify(result))));
  }
}

/** What a write may hold without waiting for its reader: Linux's default socket buffer (net.core.wmem_default). */
const SOCKET_BUFFER = 212992;

/**
 * Two MigrationChannels joined back to back, for a migration between two
 * hosts in one process (the benchmark): what one writes, the other reads.
 * Log lines go to `log`, tagged with the end.
 */
export function channelPair(
  log: (line: string) => void = () => {},
): [MigrationChannel & { end(): void }, MigrationChannel & { end(): void }] {
  const make = (name: string) => {
    const queue = new ByteQueue();
    let ended = false;
    let waiter: (() => void) | undefined;
    const wake = (): void => {
      const w = waiter;
      waiter = undefined;
      w?.();
    };
    const end = {
      offset: 0,
      get buffered(): number {
        return queue.length;
      },
      peer: undefined as unknown as { push(b: Buffer): void; close(): void },
      push(b: Buffer): void {
        queue.push(b);
        wake();
      },
      /** The peer writes no more (it finished, or failed). */
      close(): void {
        ended = true;
        wake();
      },
      /** This end is done: its peer's reads past what it has fail, as at a closed socket. */
      end(): void {
        end.peer.close();
      },
      async read(n: number): Promise<Buffer> {
        while (queue.length < n) {
          if (ended)
            throw new StreamError(`the peer's stream ended at offset ${end.offset + queue.length}`);
          await new Promise<void>((r) => (waiter = r));
        }
        end.offset += n;
        return queue.take(n);
      },
      async write(chunks: readonly Uint8Array[]): Promise<void> {
        const b = Buffer.concat(chunks);
        end.peer.push(b);
        // As a socket: a write that fits its buffer returns at once (the
        // reader runs when this side next waits); a larger one returns once
        // the reader had its turn, so a sender of rounds lets the rest of
        // the host (the guest it sends) run between them.
        if (b.length > SOCKET_BUFFER) await new Promise<void>((r) => setImmediate(r));
      },
      log: (line: string): void => log(`${name}: ${line}`),
    };
    return end;
  };
  const a = make("sender");
  const b = make("receiver");
  a.peer = b;
  b.peer = a;
  return [a, b];
}
