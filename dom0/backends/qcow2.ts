/**
 * qcow2 images (QEMU's format, docs/interop/qcow2.txt; versions 2 and 3,
 * 16-bit refcounts, no encryption): reads go through the L1 and L2 tables
 * to the host cluster, to the backing file, or to zeros; writes allocate
 * clusters (L2 tables and data clusters, copying a partly written
 * cluster's old contents from the backing file or zeros) and keep
 * refcounts and the COPIED flags as `qemu-img check` expects. A new
 * cluster goes where the first cluster with a refcount of 0 is (one a
 * discard gave back), as in QEMU, or at the end: the file grows as the
 * disk is written. Compressed clusters (zlib, as
 * `qemu-img convert -c` makes them) are inflated on read; a write into one
 * moves the cluster to a new, uncompressed one and gives back the
 * compressed bytes' references. Images with unknown incompatible features
 * (zstd compression among them) are refused by name.
 */
import { closeSync, fstatSync, readSync, realpathSync, writeSync } from "node:fs";
import {
  QCOW_MAX_L1_SIZE,
  QCOW_MAX_REFTABLE_SIZE,
  checkQcow2,
  validateTable,
} from "./qcow2_check.js";
import { openHostFile } from "../../xen/common/host_file.js";
import { inflateRawSync } from "node:zlib";
import { dirname, isAbsolute, resolve } from "node:path";
import {
  ImageFile,
  RawFileStorage,
  SECTOR,
  preadFully,
  pwriteFully,
  type BlockStorage,
} from "./storage.js";

export const QCOW2_MAGIC = 0x514649fb;
/** Images in a backing chain, the disk's own included. */
export const MAX_BACKING_DEPTH = 16;
const L1E_OFFSET_MASK = 0x00fffffffffffe00n;
const L2E_OFFSET_MASK = 0x00fffffffffffe00n;
const QCOW_OFLAG_COPIED = 1n << 63n;
const QCOW_OFLAG_COMPRESSED = 1n << 62n;
const QCOW_OFLAG_ZERO = 1n;

/** Whether the file at `path` starts with qcow2's magic (`what` names it in errors). */
export function isQcow2(path: string, what = "disk"): boolean {
  const { fd } = openHostFile(path, { what, blockDevice: true });
  try {
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 0) === 4 && b.readUInt32BE(0) === QCOW2_MAGIC;
  } finally {
    closeSync(fd);
  }
}

/** Opens `path` as qcow2 or raw, by its magic. */
export function openImage(path: string, readonly: boolean): BlockStorage {
  return isQcow2(path) ? new Qcow2Storage(path, readonly) : new RawFileStorage(path, readonly);
}

export class Qcow2Storage extends ImageFile {
  readonly sectors: number;
  readonly description: string;
  readonly version: number;
  readonly clusterBits: number;
  readonly clusterSize: number;
  private readonly l2Bits: number;
  private readonly l1: BigUint64Array;
  private readonly l1Offset: number;
  private readonly refTable: BigUint64Array;
  private readonly refTableOffset: number;
  private readonly refBlockEntries: number;
  readonly backing: BlockStorage | undefined;
  /** The end of the file, cluster-aligned: where a cluster goes when none is free. */
  private fileEnd: number;
  /**
   * No cluster below this one is free (QEMU's free_cluster_index): the
   * search for one starts here. It moves back when a refcount falls to 0,
   * and to the file's end when a search finds none, so that appending
   * costs no search.
   */
  private freeHint = 0;
  private readonly l2Cache = new Map<number, BigUint64Array>();
  /** The last compressed cluster inflated, by its L2 entry: reads come a page at a time. */
  private inflated: { entry: bigint; data: Buffer } | undefined;

  /**
   * Opens and checks (qcow2_check.ts) the image at `path`. `chain` holds the
   * real paths of the images above it, whose backing file this is: a chain
   * that comes back to one of them, or is deeper than MAX_BACKING_DEPTH, is
   * refused.
   */
  constructor(path: string, readonly: boolean, chain: readonly string[] = []) {
    super(path, readonly, chain.length > 0 ? "backing file" : "disk");
    try {
      const h = Buffer.alloc(104);
      const got = readSync(this.fd, h, 0, 104, 0);
      const fail = (why: string): never => {
        throw new Error(`${path}: ${why}`);
      };
      if (h.readUInt32BE(0) !== QCOW2_MAGIC) fail("not a qcow2 image");
      this.version = h.readUInt32BE(4);
      if (this.version !== 2 && this.version !== 3)
        fail(`qcow2 version ${this.version} is not 2 or 3`);
      // Version 2's header is 72 bytes; version 3's at least 104.
      if (got < 72 || (h.readUInt32BE(4) === 3 && got < 104))
        fail(`the header is truncated (the file is ${this.bytes} bytes)`);
      this.clusterBits = h.readUInt32BE(20);
      if (this.clusterBits < 9 || this.clusterBits > 21)
        fail(`cluster_bits ${this.clusterBits} is out of range`);
      this.clusterSize = 1 << this.clusterBits;
      this.l2Bits = this.clusterBits - 3;
      const size = Number(h.readBigUInt64BE(24));
      if (h.readUInt32BE(32) !== 0) fail("encrypted images are not supported");
      const l1Size = h.readUInt32BE(36);
      this.l1Offset = Number(h.readBigUInt64BE(40));
      this.refTableOffset = Number(h.readBigUInt64BE(48));
      const refClusters = h.readUInt32BE(56);
      if (this.version === 3) {
        const incompatible = h.readBigUInt64BE(72);
        // Bit 0 (dirty) needs a refcount repair, bit 1 means corrupt: refuse both, and any unknown one.
        if (incompatible !== 0n)
          fail(`incompatible features 0x${incompatible.toString(16)} are not supported`);
        const order = h.readUInt32BE(96);
        if (order !== 4) fail(`refcount_order ${order} is not 4 (16-bit refcounts)`);
      }
      this.refBlockEntries = this.clusterSize / 2;
      const needL1 = Math.ceil(size / (this.clusterSize * (this.clusterSize / 8)));
      if (l1Size < needL1) fail(`an L1 table of ${l1Size} entries cannot cover ${size} bytes`);
      const check = (f: () => void): void => {
        try {
          f();
        } catch (e) {
          fail((e as Error).message);
        }
      };
      // QEMU's limits and alignment (in its order: the refcount table, then
      // the L1 table), and inside the file, before a byte of either is read.
      check(() => {
        const cs = this.clusterSize;
        const refBytes = refClusters * cs;
        validateTable(
          "Reference count table",
          this.refTableOffset,
          refBytes,
          QCOW_MAX_REFTABLE_SIZE,
          cs,
          this.bytes,
        );
        if (refClusters === 0) throw new Error("Image does not contain a reference count table");
        validateTable(
          "Active L1 table",
          this.l1Offset,
          l1Size * 8,
          QCOW_MAX_L1_SIZE,
          cs,
          this.bytes,
        );
      });
      this.l1 = this.readTable(this.l1Offset, l1Size);
      this.refTable = this.readTable(this.refTableOffset, (refClusters * this.clusterSize) / 8);
      check(() =>
        checkQcow2({
          fd: this.fd,
          fileBytes: this.bytes,
          clusterBits: this.clusterBits,
          l1Offset: this.l1Offset,
          l1: this.l1,
          refTableOffset: this.refTableOffset,
          refTable: this.refTable,
        }),
      );
      this.sectors = Math.floor(size / SECTOR);
      this.fileEnd = Math.ceil(fstatSync(this.fd).size / this.clusterSize) * this.clusterSize;
      const backingOffset = Number(h.readBigUInt64BE(8));
      const backingSize = h.readUInt32BE(16);
      if (backingOffset !== 0) {
        if (backingSize > 1023) fail("Backing file name too long");
        if (backingOffset > this.clusterSize || backingOffset + backingSize > this.bytes)
          fail(`Invalid backing file offset ${backingOffset}`);
        const nb = Buffer.alloc(backingSize);
        readSync(this.fd, nb, 0, backingSize, backingOffset);
        const name = nb.toString("utf8");
        const bpath = isAbsolute(name) ? name : resolve(dirname(path), name);
        const here = [...chain, realpathSync(path)];
        let real: string | undefined;
        try {
          real = realpathSync(bpath);
        } catch {
          // Opening it below says what is wrong.
        }
        if (real !== undefined && here.includes(real))
          fail(`backing file ${bpath}: the backing chain loops back to ${real}`);
        if (here.length >= MAX_BACKING_DEPTH)
          fail(
            `backing file ${bpath}: the backing chain is deeper than ${MAX_BACKING_DEPTH} images`,
          );
        try {
          this.backing = isQcow2(bpath, "backing file")
            ? new Qcow2Storage(bpath, true, here)
            : new RawFileStorage(bpath, true, "backing file");
        } catch (e) {
          let why = (e as Error).message;
          for (const p of [`backing file ${bpath}: `, `${bpath}: `])
            if (why.startsWith(p)) why = why.slice(p.length);
          fail(`backing file ${bpath}: ${why}`);
        }
      }
      this.description = `qcow2:${path}${this.backing ? ` (backing ${this.backing.description})` : ""}`;
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }

  private readTable(offset: number, entries: number): BigUint64Array {
    const b = Buffer.alloc(entries * 8);
    readSync(this.fd, b, 0, b.length, offset);
    const t = new BigUint64Array(entries);
    for (let i = 0; i < entries; i++) t[i] = b.readBigUInt64BE(i * 8);
    return t;
  }

  private writeU64(offset: number, v: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    writeSync(this.fd, b, 0, 8, offset);
  }

  private l2Table(offset: number): BigUint64Array {
    let t = this.l2Cache.get(offset);
    if (!t) {
      t = this.readTable(offset, this.clusterSize / 8);
      if (this.l2Cache.size > 256) this.l2Cache.clear();
      this.l2Cache.set(offset, t);
    }
    return t;
  }

  /** The L2 entry for guest byte `off`, or 0n when no L2 table exists. */
  private l2Entry(off: number): bigint {
    const l1i = Math.floor(off / 2 ** (this.clusterBits + this.l2Bits));
    const l2Off = Number((this.l1[l1i] ?? 0n) & L1E_OFFSET_MASK);
    if (l2Off === 0) return 0n;
    const l2i = Math.floor(off / this.clusterSize) % (this.clusterSize / 8);
    return this.l2Table(l2Off)[l2i]!;
  }

  /**
   * Where a compressed cluster's bytes are (the Compressed Clusters
   * Descriptor, x = 62 - (cluster_bits - 8)): bits 0..x-1 are the host byte
   * offset, bits x..61 the count of 512-byte sectors used after the one that
   * offset is in. The range runs from that first sector's start.
   */
  private compressedRange(e: bigint): { start: number; data: number; end: number } {
    const x = BigInt(62 - (this.clusterBits - 8));
    const data = Number(e & ((1n << x) - 1n));
    const more = Number((e >> x) & ((1n << (62n - x)) - 1n));
    const start = data - (data % SECTOR);
    return { start, data, end: start + (more + 1) * SECTOR };
  }

  /** A compressed cluster's contents: raw deflate (no zlib header), exactly one cluster. */
  private inflate(e: bigint): Buffer {
    if (this.inflated?.entry === e) return this.inflated.data;
    const { data, end } = this.compressedRange(e);
    const raw = Buffer.alloc(end - data);
    const n = readSync(this.fd, raw, 0, raw.length, data);
    let out: Buffer;
    try {
      // The stream may stop short of its last sector: what follows is ignored.
      out = inflateRawSync(raw.subarray(0, n), { maxOutputLength: this.clusterSize });
    } catch (err) {
      throw new Error(
        `${this.path}: the compressed cluster at ${data} does not inflate: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (out.length !== this.clusterSize) {
      throw new Error(
        `${this.path}: the compressed cluster at ${data} inflates to ${out.length} bytes, not ${this.clusterSize}`,
      );
    }
    this.inflated = { entry: e, data: out };
    return out;
  }

  /** Reads `dst.length` bytes at guest byte `off` within one cluster. */
  private readInCluster(off: number, dst: Uint8Array): void {
    const e = this.l2Entry(off);
    if (e & QCOW_OFLAG_COMPRESSED) {
      const at = off % this.clusterSize;
      dst.set(this.inflate(e).subarray(at, at + dst.length));
      return;
    }
    const host = Number(e & L2E_OFFSET_MASK);
    if (host === 0 || (e & QCOW_OFLAG_ZERO) !== 0n) {
      if (
        host === 0 &&
        !(e & QCOW_OFLAG_ZERO) &&
        this.backing &&
        off < this.backing.sectors * SECTOR
      ) {
        this.readBacking(off, dst);
      } else dst.fill(0);
      return;
    }
    preadFully(this.fd, dst, host + (off % this.clusterSize));
  }

  /** Backing-file bytes, zero past its end. */
  private readBacking(off: number, dst: Uint8Array): void {
    const b = this.backing!;
    const end = Math.min(off + dst.length, b.sectors * SECTOR);
    dst.fill(0);
    // Whole sectors from the backing file; the caller's range is sector-aligned.
    if (end > off) b.read(off / SECTOR, dst.subarray(0, end - off));
  }

  read(sector: number, dst: Uint8Array): void {
    let off = sector * SECTOR;
    let done = 0;
    while (done < dst.length) {
      const n = Math.min(dst.length - done, this.clusterSize - (off % this.clusterSize));
      this.readInCluster(off, dst.subarray(done, done + n));
      off += n;
      done += n;
    }
  }

  /**
   * A new zeroed cluster with its refcount set to 1: the first free one in
   * the file, or one at its end.
   */
  private allocCluster(): number {
    let at = this.freeCluster();
    if (at < 0) {
      at = this.fileEnd;
      this.fileEnd += this.clusterSize;
      this.freeHint = this.fileEnd / this.clusterSize;
    }
    // The open's check makes this impossible (every metadata cluster has a
    // refcount); kept so that no bug can write through the header or a table.
    if (this.overlapsFixedMetadata(at)) {
      throw new Error(`${this.path}: cluster ${at} holds metadata; refusing to write through it`);
    }
    writeSync(this.fd, Buffer.alloc(this.clusterSize), 0, this.clusterSize, at);
    this.setRefcount(at, 1);
    return at;
  }

  /** Whether the cluster at `at` is the header's or part of the L1 or refcount table. */
  private overlapsFixedMetadata(at: number): boolean {
    const end = at + this.clusterSize;
    const hits = (off: number, len: number): boolean => at < off + len && off < end;
    return (
      at === 0 ||
      hits(this.l1Offset, this.l1.length * 8) ||
      hits(this.refTableOffset, this.refTable.length * 8)
    );
  }

  /**
   * The offset of the first cluster from freeHint on, inside the file,
   * whose refcount is 0; -1 when there is none. Reads each refcount block
   * it looks in once; a cluster in a stretch no block covers counts 0.
   */
  private freeCluster(): number {
    const total = this.fileEnd / this.clusterSize;
    const perBlock = this.refBlockEntries;
    let c = this.freeHint;
    while (c < total) {
      const block = Number(this.refTable[Math.floor(c / perBlock)] ?? 0n);
      if (block === 0) break;
      const first = c % perBlock;
      const n = Math.min(perBlock - first, total - c);
      const counts = Buffer.alloc(n * 2);
      preadFully(this.fd, counts, block + first * 2);
      let i = 0;
      while (i < n && counts.readUInt16BE(i * 2) !== 0) i++;
      c += i;
      if (i < n) break;
    }
    if (c >= total) {
      this.freeHint = total;
      return -1;
    }
    this.freeHint = c + 1;
    return c * this.clusterSize;
  }

  private setRefcount(hostOff: number, value: number): void {
    const cluster = Math.floor(hostOff / this.clusterSize);
    const ti = Math.floor(cluster / this.refBlockEntries);
    if (ti >= this.refTable.length) {
      throw new Error(
        `${this.path}: the refcount table is full (the image has grown past what tsxen can map)`,
      );
    }
    let block = Number(this.refTable[ti]!);
    if (block === 0) {
      // A new refcount block, placed in a cluster it may itself count.
      block = this.fileEnd;
      this.fileEnd += this.clusterSize;
      writeSync(this.fd, Buffer.alloc(this.clusterSize), 0, this.clusterSize, block);
      this.refTable[ti] = BigInt(block);
      this.writeU64(this.refTableOffset + ti * 8, BigInt(block));
      this.setRefcount(block, 1);
    }
    const b = Buffer.alloc(2);
    b.writeUInt16BE(value);
    writeSync(this.fd, b, 0, 2, block + (cluster % this.refBlockEntries) * 2);
    if (value === 0) this.freeHint = Math.min(this.freeHint, cluster);
  }

  /** The host cluster for guest byte `off`, allocated (and filled from below) if it has none. */
  private clusterForWrite(off: number, coveringWholeCluster: boolean): number {
    const l1i = Math.floor(off / 2 ** (this.clusterBits + this.l2Bits));
    if (l1i >= this.l1.length) throw new Error(`${this.path}: offset ${off} is past the L1 table`);
    let l2Off = Number(this.l1[l1i]! & L1E_OFFSET_MASK);
    if (l2Off === 0) {
      l2Off = this.allocCluster();
      this.l1[l1i] = BigInt(l2Off) | QCOW_OFLAG_COPIED;
      this.writeU64(this.l1Offset + l1i * 8, this.l1[l1i]!);
      this.l2Cache.set(l2Off, new BigUint64Array(this.clusterSize / 8));
    }
    const l2 = this.l2Table(l2Off);
    const l2i = Math.floor(off / this.clusterSize) % (this.clusterSize / 8);
    const e = l2[l2i]!;
    const compressed = (e & QCOW_OFLAG_COMPRESSED) !== 0n;
    const host = compressed ? 0 : Number(e & L2E_OFFSET_MASK);
    if (host !== 0 && e & QCOW_OFLAG_COPIED) {
      if (e & QCOW_OFLAG_ZERO) {
        // A preallocated zero cluster: make its bytes real zeros, then clear the flag.
        writeSync(this.fd, Buffer.alloc(this.clusterSize), 0, this.clusterSize, host);
        l2[l2i] = BigInt(host) | QCOW_OFLAG_COPIED;
        this.writeU64(l2Off + l2i * 8, l2[l2i]!);
      }
      return host;
    }
    // Unallocated, zero, or shared (refcount > 1, say with a snapshot): a new
    // cluster, holding what the guest saw there before unless it is all overwritten.
    const base = off - (off % this.clusterSize);
    const old = new Uint8Array(this.clusterSize);
    if (!coveringWholeCluster) this.readInCluster(base, old);
    const fresh = this.allocCluster();
    if (!coveringWholeCluster) writeSync(this.fd, old, 0, old.length, fresh);
    l2[l2i] = BigInt(fresh) | QCOW_OFLAG_COPIED;
    this.writeU64(l2Off + l2i * 8, l2[l2i]!);
    if (compressed) this.release(e);
    return fresh;
  }

  /**
   * Gives back the references an L2 entry that no longer points anywhere
   * held: its host cluster's, or, for compressed bytes, one off every
   * cluster they touch (another compressed cluster may share one).
   */
  private release(e: bigint): void {
    if (e & QCOW_OFLAG_COMPRESSED) {
      const { start, end } = this.compressedRange(e);
      const last = Math.floor((end - 1) / this.clusterSize);
      for (let c = Math.floor(start / this.clusterSize); c <= last; c++) {
        const at = c * this.clusterSize;
        this.setRefcount(at, Math.max(0, this.refcount(at) - 1));
      }
      if (this.inflated?.entry === e) this.inflated = undefined;
      return;
    }
    const host = Number(e & L2E_OFFSET_MASK);
    if (host !== 0) this.setRefcount(host, Math.max(0, this.refcount(host) - 1));
  }

  /**
   * Discards without writing whole clusters: each becomes a zero cluster
   * (version 3's zero flag; on version 2, an unallocated one where no
   * backing file shows through) and its host cluster's reference is given
   * back, as QEMU does; the range's ends in partial clusters are written as
   * zeros. Each L2 table is written once, before the references it held go
   * (a crash between the two leaks clusters rather than sharing them). A
   * stretch with no L2 table and nothing below it reads as zeros already and
   * is passed over a table's span at a time, so discarding a large, mostly
   * empty disk is quick. Freed clusters stay in the file until new ones
   * take their place (the file does not shrink, as with QEMU's default).
   */
  override discard(sector: number, count: number): void {
    if (this.readonly) throw new Error(`${this.path} is read-only`);
    const cs = this.clusterSize;
    const span = 2 ** (this.clusterBits + this.l2Bits);
    const zero = this.version >= 3 ? QCOW_OFLAG_ZERO : 0n;
    let off = sector * SECTOR;
    const end = off + count * SECTOR;
    const wholeEnd = end - (end % cs);
    /** The L2 table being changed, and the entries it no longer holds. */
    let table: { offset: number; entries: BigUint64Array; released: bigint[] } | undefined;
    const finish = (): void => {
      if (!table) return;
      const b = Buffer.alloc(cs);
      table.entries.forEach((v, i) => b.writeBigUInt64BE(v, i * 8));
      writeSync(this.fd, b, 0, cs, table.offset);
      for (const e of table.released) this.release(e);
      table = undefined;
    };
    try {
      while (off < end) {
        const n = Math.min(end - off, cs - (off % cs));
        const below = this.backing !== undefined && off < this.backing.sectors * SECTOR;
        const l1i = Math.floor(off / span);
        const l2Off = Number(this.l1[l1i]! & L1E_OFFSET_MASK);
        if (n === cs && l2Off === 0 && !below) {
          off = Math.max(off + cs, Math.min((l1i + 1) * span, wholeEnd));
          continue;
        }
        if (n < cs || l2Off === 0 || (zero === 0n && below)) {
          // A partial cluster; or zeros that only an L2 entry of their own can
          // show over the backing file: written (which makes the table).
          finish();
          this.write(off / SECTOR, new Uint8Array(n));
          off += n;
          continue;
        }
        if (table?.offset !== l2Off) {
          finish();
          table = { offset: l2Off, entries: this.l2Table(l2Off), released: [] };
        }
        const l2i = Math.floor(off / cs) % (cs / 8);
        const e = table.entries[l2i]!;
        // (An unallocated cluster with nothing below reads as zeros already.)
        if (e !== zero && (e !== 0n || below)) {
          table.entries[l2i] = zero;
          table.released.push(e);
        }
        off += cs;
      }
    } finally {
      finish();
    }
  }

  /** The refcount of the host cluster holding byte `hostOff`; 0 where no block counts it. */
  private refcount(hostOff: number): number {
    const cluster = Math.floor(hostOff / this.clusterSize);
    const block = Number(this.refTable[Math.floor(cluster / this.refBlockEntries)] ?? 0n);
    if (block === 0) return 0;
    const b = Buffer.alloc(2);
    readSync(this.fd, b, 0, 2, block + (cluster % this.refBlockEntries) * 2);
    return b.readUInt16BE(0);
  }

  write(sector: number, src: Uint8Array): void {
    if (this.readonly) throw new Error(`${this.path} is read-only`);
    let off = sector * SECTOR;
    let done = 0;
    while (done < src.length) {
      const inCluster = off % this.clusterSize;
      const n = Math.min(src.length - done, this.clusterSize - inCluster);
      const host = this.clusterForWrite(off, n === this.clusterSize);
      pwriteFully(this.fd, src.subarray(done, done + n), host + inCluster);
      off += n;
      done += n;
    }
  }

  override close(): void {
    super.close();
    this.backing?.close();
  }
}
