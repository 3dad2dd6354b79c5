/**
 * The checks a qcow2 image passes before it is served (qcow2.ts), after
 * QEMU's: the limits its open applies (qcow2_do_open, qcow2_validate_table:
 * an active L1 table of at most 32 MiB, a refcount table of at most 8 MiB,
 * tables cluster-aligned), and the corruptions `qemu-img check` reports as
 * errors: a table, refcount block, L2 table or data cluster that is not
 * aligned or lies past the end of the file, metadata that overlaps other
 * metadata or data, a cluster in use whose refcount is lower than its
 * references, and a cluster marked COPIED whose refcount is not 1. Leaked
 * clusters (a refcount above the references) are fine, as for QEMU.
 *
 * Once an image passes, every cluster that holds metadata has a refcount of
 * at least 1, so the allocator (which takes clusters whose refcount is 0)
 * never hands one out: no guest write can land on metadata. The work is
 * bounded by the image's metadata, itself bounded by the file's size.
 */
import { readSync } from "node:fs";

/** QEMU's limits on the tables it reads whole at open. */
export const QCOW_MAX_L1_SIZE = 32 * 1024 * 1024;
export const QCOW_MAX_REFTABLE_SIZE = 8 * 1024 * 1024;
/** Clusters in a file whose references one check counts (a 2-byte counter each: 256 MiB). */
export const MAX_CHECKED_CLUSTERS = 1 << 27;
/**
 * L2 tables one check reads (each is one read of a cluster, on the thread
 * that opens the image): 32 TiB of disk with 64 KiB clusters. An image of
 * tiny clusters could otherwise make the open read millions of them.
 */
export const MAX_CHECKED_L2_TABLES = 65536;
/** L2 table bytes one check reads: 1 TiB of disk with 64 KiB clusters. */
export const MAX_CHECKED_L2_BYTES = 128 * 1024 * 1024;

const L1E_OFFSET_MASK = 0x00fffffffffffe00n;
const L2E_OFFSET_MASK = 0x00fffffffffffe00n;
const QCOW_OFLAG_COPIED = 1n << 63n;
const QCOW_OFLAG_COMPRESSED = 1n << 62n;

/** What the check needs of an image: its layout, as the header gives it. */
export interface Qcow2Layout {
  readonly fd: number;
  readonly fileBytes: number;
  readonly clusterBits: number;
  readonly l1Offset: number;
  readonly l1: BigUint64Array;
  readonly refTableOffset: number;
  readonly refTable: BigUint64Array;
}

/**
 * Checks a table's place as QEMU's qcow2_validate_table does, and that it
 * lies inside the file (a table past the end would be written there, and
 * the file would grow to reach it). Throws naming the table.
 */
export function validateTable(
  name: string,
  offset: number,
  bytes: number,
  maxBytes: number,
  clusterSize: number,
  fileBytes: number,
): void {
  if (bytes > maxBytes) throw new Error(`${name} too large (${bytes} bytes; at most ${maxBytes})`);
  if (offset % clusterSize !== 0) throw new Error(`${name} offset invalid (${offset})`);
  if (bytes > 0 && offset + bytes > fileBytes) {
    throw new Error(
      `${name} at ${offset} (${bytes} bytes) is past the end of the file (${fileBytes})`,
    );
  }
}

/** Runs the checks (see the module's doc); throws an Error naming the first corruption. */
export function checkQcow2(img: Qcow2Layout): void {
  const cs = 2 ** img.clusterBits;
  const clusters = Math.ceil(img.fileBytes / cs);
  if (clusters > MAX_CHECKED_CLUSTERS) {
    throw new Error(
      `the file has ${clusters} clusters, more than tsxen checks (${MAX_CHECKED_CLUSTERS})`,
    );
  }
  /** References to each cluster, and what took it first (metadata only). */
  const refs = new Uint16Array(clusters);
  const meta = new Map<number, string>();
  /** The clusters with a reference, in the order first met: what the refcount pass visits. */
  const used: number[] = [];
  const inFile = (off: number, len: number): boolean => off + len <= img.fileBytes;
  const take = (off: number, len: number, what: string, metadata: boolean): void => {
    for (let c = Math.floor(off / cs); c * cs < off + len; c++) {
      const first = meta.get(c);
      if (first !== undefined || (metadata && refs[c]! > 0)) {
        throw new Error(`${what} at ${c * cs} overlaps ${first ?? "a data cluster"}`);
      }
      if (metadata) meta.set(c, what);
      if (refs[c] === 0) used.push(c);
      if (refs[c]! < 0xffff) refs[c]!++;
    }
  };
  take(0, cs, "the header", true);
  take(img.l1Offset, img.l1.length * 8, "the active L1 table", true);
  take(img.refTableOffset, img.refTable.length * 8, "the refcount table", true);

  const blocks: number[] = [];
  img.refTable.forEach((e, i) => {
    const off = Number(e);
    if (off === 0) return;
    if (off % cs !== 0) throw new Error(`refcount block ${i} is not cluster aligned (${off})`);
    if (!inFile(off, cs)) throw new Error(`refcount block ${i} at ${off} is outside the image`);
    take(off, cs, `refcount block ${i}`, true);
    blocks[i] = off;
  });

  let inUse = 0;
  for (const e of img.l1) if ((e & L1E_OFFSET_MASK) !== 0n) inUse++;
  if (inUse > MAX_CHECKED_L2_TABLES || inUse * cs > MAX_CHECKED_L2_BYTES) {
    throw new Error(
      `the active L1 table names ${inUse} L2 tables; tsxen checks images of at most ${MAX_CHECKED_L2_TABLES} (and ${MAX_CHECKED_L2_BYTES >> 20} MiB of them)`,
    );
  }
  const tables: Array<[number, number]> = [];
  img.l1.forEach((e, i) => {
    const off = Number(e & L1E_OFFSET_MASK);
    if (off === 0) return;
    if (off % cs !== 0) throw new Error(`L2 table ${i} is not cluster aligned (${off})`);
    if (!inFile(off, cs)) throw new Error(`L2 table ${i} at ${off} is outside the image`);
    take(off, cs, `L2 table ${i}`, true);
    tables.push([i, off]);
  });

  // Data clusters, each L2 table read once; COPIED ones must end up with refcount 1.
  const copied: number[] = [];
  const l2 = Buffer.alloc(cs);
  const x = BigInt(62 - (img.clusterBits - 8));
  for (const [i, off] of tables) {
    readSync(img.fd, l2, 0, cs, off);
    for (let j = 0; j < cs / 8; j++) {
      const e = l2.readBigUInt64BE(j * 8);
      const where = `the data cluster of L2 table ${i} entry ${j}`;
      if (e & QCOW_OFLAG_COMPRESSED) {
        const data = Number(e & ((1n << x) - 1n));
        const more = Number((e >> x) & ((1n << (62n - x)) - 1n));
        const start = data - (data % 512);
        // The stream may stop short of its last sector, past the file's end.
        if (start >= img.fileBytes) throw new Error(`${where} (compressed) is outside the image`);
        const len = Math.min((more + 1) * 512, img.fileBytes - start);
        take(start, len, `${where} (compressed)`, false);
        continue;
      }
      const host = Number(e & L2E_OFFSET_MASK);
      if (host === 0) continue;
      if (host % cs !== 0) throw new Error(`${where} is not cluster aligned (${host})`);
      if (!inFile(host, cs)) throw new Error(`${where} at ${host} is outside the image`);
      take(host, cs, where, false);
      if (e & QCOW_OFLAG_COPIED) copied.push(host / cs);
    }
  }

  // Refcounts against references, each refcount block read once.
  const per = cs / 2;
  const block = Buffer.alloc(cs);
  let loaded = -1;
  const refcount = (c: number): number => {
    const b = blocks[Math.floor(c / per)];
    if (b === undefined) return 0;
    if (loaded !== b) {
      readSync(img.fd, block, 0, cs, b);
      loaded = b;
    }
    return block.readUInt16BE((c % per) * 2);
  };
  // Only the clusters in use: a sparse file of millions of clusters costs
  // nothing here (every cluster of a 64 GiB file of 512-byte ones took 370 ms).
  used.sort((a, b) => a - b);
  for (const c of used) {
    const rc = refcount(c);
    if (rc < refs[c]!) {
      throw new Error(
        `cluster ${c} (${meta.get(c) ?? "data"}) has refcount ${rc} but ${refs[c]} reference(s); \`qemu-img check -r all\` repairs it`,
      );
    }
  }
  for (const c of copied) {
    const rc = refcount(c);
    if (rc !== 1) throw new Error(`data cluster ${c} is marked COPIED but its refcount is ${rc}`);
  }
}
