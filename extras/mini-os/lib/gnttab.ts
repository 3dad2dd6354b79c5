// Grant tables, v1 (mini-os gnttab.c): granting pages of this domain to
// another, ending the grant, and copying to and from pages others granted.
// The table's frames are the wasm32 architecture pages from GNTTAB_ADDR on
// (pfn 6..): 512 entries each, of which refs 0..7 are reserved for the
// toolstack. A domain starts with one frame; the SDK asks for more
// (GNTTABOP_setup_table) when it first needs them, up to NR_GRANT_FRAMES.
// A wasm32 guest cannot map a foreign page into its memory; it moves data with
// GNTTABOP_copy (see docs/arch-wasm32.md).
import {
  GNTTAB_ADDR,
  GNTTAB_NR_RESERVED_ENTRIES,
  GNTTABOP_copy,
  GNTTABOP_setup_table,
  GNTTAB_SETUP_TABLE_DOM_OFF,
  GNTTAB_SETUP_TABLE_NR_FRAMES_OFF,
  GNTTAB_SETUP_TABLE_STATUS_OFF,
  GNTTAB_SETUP_TABLE_FRAME_LIST_OFF,
  GNTTAB_SETUP_TABLE_BYTES,
  GNTCOPY_source_gref,
  GNTCOPY_dest_gref,
  GNTTAB_COPY_SIZE,
  GNTTAB_COPY_LEN_OFF,
  GNTTAB_COPY_FLAGS_OFF,
  GNTTAB_COPY_STATUS_OFF,
  GNTTAB_COPY_DEST_OFF,
  GTF_permit_access,
  GTF_readonly,
  GTF_reading,
  GTF_writing,
  DOMID_SELF,
} from "./xen_abi";
import { HYPERVISOR_grant_table_op } from "./hypervisor";

/** Grant frames this SDK uses at most (mini-os's NR_GRANT_FRAMES). */
const NR_GRANT_FRAMES: u32 = 4;
/** Entries per frame: 4096 / sizeof(grant_entry_v1). */
const ENTRIES_PER_FRAME: u32 = 512;
export const NR_GRANT_ENTRIES: u32 = NR_GRANT_FRAMES * ENTRIES_PER_FRAME;
/** Frames the table has now. */
let nr_frames: u32 = 1;
const setup_op = memory.data(GNTTAB_SETUP_TABLE_BYTES, 8);
const frame_list = memory.data(<i32>(NR_GRANT_FRAMES * 8), 8);
// A bitmap of refs in use (the SDK does not allocate).
const used = memory.data(<i32>NR_GRANT_ENTRIES / 8);
const copy_op = memory.data(GNTTAB_COPY_SIZE, 8);

/** The guest frame number of guest address `addr` (wasm32 guests are auto-translated). */
export function virt_to_gfn(addr: usize): u32 {
  return <u32>(addr >> 12);
}

/** GNTTABOP_setup_table for `n` frames (they sit in the architecture area already); whether it worked. */
function grow_table(n: u32): bool {
  memory.fill(setup_op, 0, GNTTAB_SETUP_TABLE_BYTES);
  store<u16>(setup_op + GNTTAB_SETUP_TABLE_DOM_OFF, <u16>DOMID_SELF);
  store<u32>(setup_op + GNTTAB_SETUP_TABLE_NR_FRAMES_OFF, n);
  store<u64>(setup_op + GNTTAB_SETUP_TABLE_FRAME_LIST_OFF, <u64>frame_list);
  const rc = HYPERVISOR_grant_table_op(GNTTABOP_setup_table, setup_op, 1);
  if (rc != 0 || load<i16>(setup_op + GNTTAB_SETUP_TABLE_STATUS_OFF) != 0) return false;
  nr_frames = n;
  return true;
}

/**
 * Grants domain `domid` access to frame `gfn` (mini-os gnttab_grant_access).
 * Returns the grant reference, or -1 when every entry is in use.
 */
export function gnttab_grant_access(domid: u32, gfn: u32, readonly: bool): i32 {
  for (let ref: u32 = <u32>GNTTAB_NR_RESERVED_ENTRIES; ref < NR_GRANT_ENTRIES; ref++) {
    const byte = used + (ref >> 3);
    const bit = <u8>((<u32>1) << (ref & 7));
    if ((load<u8>(byte) & bit) != 0) continue;
    if (ref / ENTRIES_PER_FRAME >= nr_frames && !grow_table(ref / ENTRIES_PER_FRAME + 1)) return -1;
    store<u8>(byte, load<u8>(byte) | bit);
    const e = GNTTAB_ADDR + ref * 8;
    store<u32>(e + 4, gfn);
    store<u16>(e + 2, <u16>domid);
    // The flags go last: the entry is live from this store on.
    atomic.store<u16>(e, <u16>(GTF_permit_access | (readonly ? GTF_readonly : 0)));
    return <i32>ref;
  }
  return -1;
}

/**
 * Grants domain `domid` access to the `n` pages from `base` on, one grant
 * each, and stores their refs as u32s from `refs` on (how a frontend shares
 * its buffer pages). Returns false when the grant entries run out.
 */
export function gnttab_grant_pages(
  domid: u32,
  base: usize,
  n: u32,
  refs: usize,
  readonly: bool,
): bool {
  for (let i: u32 = 0; i < n; i++) {
    const g = gnttab_grant_access(domid, virt_to_gfn(base + i * 4096), readonly);
    if (g < 0) return false;
    store<u32>(refs + i * 4, <u32>g);
  }
  return true;
}

/**
 * Ends access through `ref` (gnttab_end_access): fails, changing nothing,
 * while the grantee still has the page mapped or is copying it.
 */
export function gnttab_end_access(ref: u32): bool {
  if (ref < <u32>GNTTAB_NR_RESERVED_ENTRIES || ref >= NR_GRANT_ENTRIES) return false;
  const e = GNTTAB_ADDR + ref * 8;
  let flags = atomic.load<u16>(e);
  while (true) {
    if ((flags & (<u16>(GTF_reading | GTF_writing))) != 0) return false;
    const seen = atomic.cmpxchg<u16>(e, flags, 0);
    if (seen == flags) break;
    flags = seen;
  }
  const byte = used + (ref >> 3);
  store<u8>(byte, load<u8>(byte) & ~(<u8>((<u32>1) << (ref & 7))));
  return true;
}

function copy_side(at: usize, ref_or_gfn: u32, domid: u32, offset: u32): void {
  store<u64>(copy_op + at, <u64>ref_or_gfn);
  store<u16>(copy_op + at + 8, <u16>domid);
  store<u16>(copy_op + at + 10, <u16>offset);
}

function do_copy(len: u32, flags: u32): i32 {
  store<u16>(copy_op + GNTTAB_COPY_LEN_OFF, <u16>len);
  store<u16>(copy_op + GNTTAB_COPY_FLAGS_OFF, <u16>flags);
  const rc = HYPERVISOR_grant_table_op(GNTTABOP_copy, copy_op, 1);
  return rc < 0 ? rc : <i32>load<i16>(copy_op + GNTTAB_COPY_STATUS_OFF);
}

/**
 * Copies `len` bytes at `offset` of `domid`'s grant `ref` into this domain's
 * memory at `dst`, which must not cross a page. Returns a GNTST_* status.
 */
export function gnttab_copy_from(domid: u32, ref: u32, offset: u32, dst: usize, len: u32): i32 {
  copy_side(0, ref, domid, offset);
  copy_side(GNTTAB_COPY_DEST_OFF, virt_to_gfn(dst), DOMID_SELF, <u32>(dst & 4095));
  return do_copy(len, GNTCOPY_source_gref);
}

/**
 * Copies `len` bytes of this domain's memory at `src` into `domid`'s grant
 * `ref` at `offset`. Returns a GNTST_* status.
 */
export function gnttab_copy_to(src: usize, domid: u32, ref: u32, offset: u32, len: u32): i32 {
  copy_side(0, virt_to_gfn(src), DOMID_SELF, <u32>(src & 4095));
  copy_side(GNTTAB_COPY_DEST_OFF, ref, domid, offset);
  return do_copy(len, GNTCOPY_dest_gref);
}
