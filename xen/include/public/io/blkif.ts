/**
 * The block device interface, following `xen/include/public/io/blkif.h`:
 * request operations, response statuses, the vdisk info flags, and the
 * request and response layouts of the blkif shared ring (112-byte requests,
 * so 32 entries in one 4 KiB ring page). Segment `first_sect`/`last_sect`
 * count 512-byte sectors within the granted page.
 */
import { struct } from "../layout.js";
import { ringSize } from "./ring.js";

export const BLKIF_OP_READ = 0;
export const BLKIF_OP_WRITE = 1;
export const BLKIF_OP_WRITE_BARRIER = 2;
export const BLKIF_OP_FLUSH_DISKCACHE = 3;
export const BLKIF_OP_RESERVED_1 = 4;
export const BLKIF_OP_DISCARD = 5;
export const BLKIF_OP_INDIRECT = 6;

export const BLKIF_MAX_SEGMENTS_PER_REQUEST = 11;
export const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8;
export const BLKIF_DISCARD_SECURE = 1 << 0;

export const BLKIF_RSP_EOPNOTSUPP = -2;
export const BLKIF_RSP_ERROR = -1;
export const BLKIF_RSP_OKAY = 0;

export const VDISK_CDROM = 0x1;
export const VDISK_REMOVABLE = 0x2;
export const VDISK_READONLY = 0x4;

/** The unit of first_sect, last_sect and sector_number. */
export const BLKIF_SECTOR_SIZE = 512;

/** struct blkif_request_segment (6 bytes of fields, 8 with padding). */
export const blkif_request_segment = struct("blkif_request_segment", [
  ["gref", 4],
  ["first_sect", 1],
  ["last_sect", 1],
]);

/** struct blkif_request */
export const blkif_request = struct("blkif_request", [
  ["operation", 1],
  ["nr_segments", 1],
  ["handle", 2],
  ["id", 8],
  ["sector_number", 8],
  ["seg", BLKIF_MAX_SEGMENTS_PER_REQUEST * blkif_request_segment.size, 4],
]);

/** struct blkif_request_discard */
export const blkif_request_discard = struct("blkif_request_discard", [
  ["operation", 1],
  ["flag", 1],
  ["handle", 2],
  ["id", 8],
  ["sector_number", 8],
  ["nr_sectors", 8],
]);

/** struct blkif_request_indirect (not i386: no trailing pad) */
export const blkif_request_indirect = struct("blkif_request_indirect", [
  ["operation", 1],
  ["indirect_op", 1],
  ["nr_segments", 2],
  ["id", 8],
  ["sector_number", 8],
  ["handle", 2],
  ["indirect_grefs", BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * 4, 4],
]);

/** struct blkif_response */
export const blkif_response = struct("blkif_response", [
  ["id", 8],
  ["operation", 1],
  ["status", 2],
]);

/** Segments in one indirect page (BLKIF_SEGS_PER_INDIRECT_FRAME). */
export const BLKIF_SEGS_PER_INDIRECT_FRAME = 4096 / blkif_request_segment.size;

/** Bytes of one ring entry: the larger of request and response. */
export const BLKIF_RING_ENTRY = Math.max(blkif_request.size, blkif_response.size);

/** Entries in a blkif ring of `pages` pages (`__CONST_RING_SIZE(blkif, PAGE_SIZE * pages)`). */
export const blkifRingSize = (pages = 1): number => ringSize(4096 * pages, BLKIF_RING_ENTRY);
