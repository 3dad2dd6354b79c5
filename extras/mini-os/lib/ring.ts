// A front ring as io/ring.h's macros define it (FRONT_RING_INIT/ATTACH,
// RING_GET_REQUEST, RING_PUSH_REQUESTS_AND_CHECK_NOTIFY,
// RING_HAS_UNCONSUMED_RESPONSES, RING_FINAL_CHECK_FOR_RESPONSES) over a
// shared ring at `sring`: the 64-byte header (req_prod, req_event,
// rsp_prod, rsp_event), then `size` entries of `entry` bytes. Indices are
// free-running u32; every difference is taken modulo 2^32.

@unmanaged
export class FrontRing {
  sring: usize;
  entry: u32;
  size: u32;
  /** Requests produced, not necessarily pushed (req_prod_pvt). */
  req_prod_pvt: u32;
  /** Responses consumed (rsp_cons). */
  rsp_cons: u32;
}

/** The FrontRing kept at `p` (24 bytes, e.g. `memory.data(24, 8)`: the SDK does not allocate). */
export function front_ring_at(p: usize): FrontRing {
  return changetype<FrontRing>(p);
}

/**
 * SHARED_RING_INIT then FRONT_RING_ATTACH at `start` (FRONT_RING_INIT when
 * 0): a ring of `bytes` at `sring` with entries of `entry` bytes.
 */
export function front_ring_init(
  r: FrontRing,
  sring: usize,
  bytes: u32,
  entry: u32,
  start: u32,
): void {
  memory.fill(sring, 0, bytes);
  atomic.store<u32>(sring, start);
  atomic.store<u32>(sring + 4, start + 1);
  atomic.store<u32>(sring + 8, start);
  atomic.store<u32>(sring + 12, start + 1);
  // __RING_SIZE: entries that fit after the header, rounded down to a power of two.
  let n = (bytes - 64) / entry;
  let size: u32 = 1;
  while (size * 2 <= n) size *= 2;
  r.sring = sring;
  r.entry = entry;
  r.size = size;
  r.req_prod_pvt = start;
  r.rsp_cons = start;
}

/** The slot of index `idx` (RING_GET_REQUEST / RING_GET_RESPONSE). */
export function ring_slot(r: FrontRing, idx: u32): usize {
  return r.sring + 64 + (idx & (r.size - 1)) * r.entry;
}

/** Free request slots (RING_FREE_REQUESTS). */
export function ring_free_requests(r: FrontRing): u32 {
  return r.size - (r.req_prod_pvt - r.rsp_cons);
}

/** RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publishes; true if the backend asked to hear. */
export function ring_push_requests(r: FrontRing): bool {
  const old = atomic.load<u32>(r.sring);
  const now = r.req_prod_pvt;
  atomic.store<u32>(r.sring, now);
  return now - atomic.load<u32>(r.sring + 4) < now - old;
}

/** RING_HAS_UNCONSUMED_RESPONSES */
export function ring_unconsumed_responses(r: FrontRing): u32 {
  return atomic.load<u32>(r.sring + 8) - r.rsp_cons;
}

/**
 * RING_FINAL_CHECK_FOR_RESPONSES: with none waiting, asks for an event at
 * the next response, then looks again so that one that arrived meanwhile
 * is seen. True if responses are waiting.
 */
export function ring_final_check_for_responses(r: FrontRing): bool {
  if (ring_unconsumed_responses(r) > 0) return true;
  atomic.store<u32>(r.sring + 12, r.rsp_cons + 1);
  return ring_unconsumed_responses(r) > 0;
}
