// blkbench: exercises its first disk (xvda) through blkfront. By default it
// writes `mib` MiB (default 8) sequentially in 1 MiB requests, flushes, reads
// them back (timed), reads them once more verifying every word (untimed),
// then does `ios` (default 2000) random 4 KiB reads, and prints each phase's
// speed. "write" on the command line only writes the pattern and flushes;
// "verify" only reads it back and checks it (so one guest can write a disk
// and another check it); `seed=N` varies the pattern; `passes=N` writes and
// reads N times and reports the fastest of each;
// `depth=N` (up to 4) also times reads with N 1 MiB requests in flight
// (blkfront_aio), as a readahead would, in turns with the one-at-a-time
// passes, and checks what they read in a last, untimed pass; `warmup=N`
// first writes a pass and flushes (unless only verifying), then reads N MiB
// each way, so that the timed phases see the host's path compiled (the
// one-at-a-time reads are reported as "warm-up read");
// `hold` keeps the disk afterwards until it is unplugged (`xl block-detach`);
// `wait` boots without a disk and waits for xvda to be hot-plugged
// (`xl block-attach`). It powers off when done, or crashes on a failure.
import {
  cons,
  NOW,
  shutdown,
  SHUTDOWN_poweroff,
  SHUTDOWN_crash,
  cmdline_arg,
  cmdline_has,
  do_hypervisor_callback,
  local_irq_enable,
  xenbus_init,
  xenbus_wait_for_watch,
  xenbus_wait_for_node,
} from "../lib/index";
// Drivers are imported by the kernels that use them: their static pages
// would otherwise be in every kernel.
import {
  blkfront_init,
  blkfront_sectors,
  blkfront_read,
  blkfront_write,
  blkfront_flush,
  blkfront_follow_backend,
  blkfront_aio_read,
  blkfront_aio_wait,
  blkfront_aio_status,
} from "../lib/blkfront";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

const CHUNK: u32 = 1 << 20;
/**
 * Reads in flight at most: 4 MiB of buffers, 1024 pages, is what blkfront's
 * persistent grants (and the grant table's 2048 entries) leave room for.
 */
const MAX_DEPTH: u32 = 4;
/**
 * `depth` 1 MiB buffers, page-aligned, from the heap (not in the image); the
 * first is also the one-at-a-time phases' buffer.
 */
let bufs: usize = 0;
/** For each asynchronous request id: the chunk it reads and the buffer it fills. */
const id_chunk = memory.data(<i32>(MAX_DEPTH * 8), 8);
const id_buf = memory.data(<i32>(MAX_DEPTH * 4), 4);

function fail(what: string, rc: i64): void {
  cons.s("blkbench: ").s(what).s(" failed: ").i(rc).nl();
  shutdown(SHUTDOWN_crash);
}

function word(sector: u64, i: u32, seed: u64): u32 {
  return <u32>(sector * 131 + <u64>i * 7 + seed * 1000003);
}

function fill(first: u64, seed: u64): void {
  for (let s: u32 = 0; s < CHUNK / 512; s++)
    for (let i: u32 = 0; i < 128; i++) store<u32>(bufs + s * 512 + i * 4, word(first + s, i, seed));
}

/** The first sector of the chunk at `at` whose contents differ from the pattern, or -1. */
function check(at: usize, first: u64, seed: u64): i64 {
  for (let s: u32 = 0; s < CHUNK / 512; s++)
    for (let i: u32 = 0; i < 128; i++)
      if (load<u32>(at + s * 512 + i * 4) != word(first + s, i, seed)) return <i64>(first + s);
  return -1;
}

/**
 * Reads chunks 0..`mib`-1 with `depth` requests in flight, each into a
 * free buffer, the next sent as soon as one is answered; with `verify`,
 * checks each as it comes in. Returns the first bad sector, or -1.
 */
function read_ahead(mib: u64, depth: u32, verify: bool, seed: u64): i64 {
  let free: u32 = (1 << depth) - 1;
  let next: u64 = 0;
  let inflight: u32 = 0;
  let bad: i64 = -1;
  while (next < mib || inflight > 0) {
    while (next < mib && free != 0) {
      const k = ctz(free);
      const id = blkfront_aio_read(next * (CHUNK / 512), bufs + <usize>k * CHUNK, CHUNK);
      if (id < 0) fail("read", id);
      store<u64>(id_chunk + <usize>id * 8, next);
      store<u32>(id_buf + <usize>id * 4, k);
      free &= ~(1 << k);
      next++;
      inflight++;
    }
    const id = blkfront_aio_wait();
    if (id < 0) fail("waiting for a read", id);
    if (blkfront_aio_status() < 0) fail("read", blkfront_aio_status());
    const k = load<u32>(id_buf + <usize>id * 4);
    if (verify && bad < 0) {
      bad = check(
        bufs + <usize>k * CHUNK,
        load<u64>(id_chunk + <usize>id * 8) * (CHUNK / 512),
        seed,
      );
    }
    free |= 1 << k;
    inflight--;
  }
  return bad;
}

function rate(what: string, bytes: u64, ns: u64): void {
  const ms = ns / 1000000;
  const mibs = ns == 0 ? 0 : (bytes * 1000000000) / ns / (1 << 20);
  cons
    .s("blkbench: ")
    .s(what)
    .s(" ")
    .u(bytes >> 20)
    .s(" MiB in ")
    .u(ms)
    .s(" ms (")
    .u(mibs)
    .s(" MiB/s, ")
    .u(ns / 1000)
    .s(" us)")
    .nl();
}

export function _start(): void {
  local_irq_enable(0);
  xenbus_init();
  let depth = <u32>cmdline_arg("depth", 1);
  if (depth < 1) depth = 1;
  if (depth > MAX_DEPTH) depth = MAX_DEPTH;
  bufs = (heap.alloc(<usize>depth * CHUNK + 4095) + 4095) & ~(<usize>4095);
  if (cmdline_has("wait")) {
    cons.s("blkbench: waiting for xvda").nl();
    const w = xenbus_wait_for_node("device/vbd/51712/state", "blkbench");
    if (w < 0) fail("waiting for xvda", w);
  }
  const rc = blkfront_init(51712);
  if (rc < 0) fail("connecting xvda", rc);
  const sectors = blkfront_sectors();
  cons.s("blkbench: xvda has ").u(sectors).s(" sectors").nl();
  let mib = cmdline_arg("mib", 8);
  const seed = cmdline_arg("seed", 1);
  if (mib * 2048 > sectors) mib = sectors / 2048;
  const chunkSectors: u64 = CHUNK / 512;
  const only_write = cmdline_has("write");
  const only_verify = cmdline_has("verify");
  // With passes=N each phase below is done N times and the fastest counts.
  let passes = cmdline_arg("passes", 1);
  if (passes == 0) passes = 1;
  // With warmup=N, N MiB read each way first, so that the timed phases
  // see the host's JIT-compiled path, as a long-running host does. A pass
  // of writes and a flush go before them (unless only verifying), so that
  // both kinds of request have been through the path before any is timed.
  const warm = cmdline_arg("warmup", 0);
  if (warm > 0) {
    if (!only_verify) {
      for (let c: u64 = 0; c < mib; c++) {
        fill(c * chunkSectors, seed);
        const w = blkfront_write(c * chunkSectors, bufs, CHUNK);
        if (w < 0) fail("write", w);
      }
      const f = blkfront_flush();
      if (f < 0) fail("flush", f);
    }
    const t0 = NOW();
    for (let c: u64 = 0; c < warm; c++) {
      const r = blkfront_read((c % mib) * chunkSectors, bufs, CHUNK);
      if (r < 0) fail("read", r);
    }
    // How fast a host that has just started reads: reported, not the figure.
    rate("warm-up read", warm << 20, NOW() - t0);
    if (depth > 1) for (let c: u64 = 0; c < warm; c += mib) read_ahead(mib, depth, false, seed);
  }
  if (!only_verify) {
    // Timed: the requests and the final flush, not making the pattern.
    let best: u64 = U64.MAX_VALUE;
    for (let p: u64 = 0; p < passes; p++) {
      let ns: u64 = 0;
      for (let c: u64 = 0; c < mib; c++) {
        fill(c * chunkSectors, seed);
        const t0 = NOW();
        const w = blkfront_write(c * chunkSectors, bufs, CHUNK);
        ns += NOW() - t0;
        if (w < 0) fail("write", w);
      }
      const t0 = NOW();
      const f = blkfront_flush();
      ns += NOW() - t0;
      if (f < 0) fail("flush", f);
      if (ns < best) best = ns;
    }
    rate("sequential write", mib << 20, best);
  }
  if (!only_write) {
    // Timed: the requests alone, as a program that reads a file through
    // (and Node's side of the benchmark) does; what they read is checked
    // in a last pass, untimed.
    let best: u64 = U64.MAX_VALUE;
    let bestAhead: u64 = U64.MAX_VALUE;
    let bad: i64 = -1;
    for (let p: u64 = 0; p <= passes; p++) {
      const last = p == passes;
      // The checked pass reads into another buffer where there is one, so
      // that the check covers blkfront listing new pages after reusing a list.
      const into = last && depth > 1 ? bufs + CHUNK : bufs;
      const t0 = NOW();
      for (let c: u64 = 0; c < mib; c++) {
        const r = blkfront_read(c * chunkSectors, into, CHUNK);
        if (r < 0) fail("read", r);
        if (last && bad < 0) bad = check(into, c * chunkSectors, seed);
      }
      const ns = NOW() - t0;
      if (last) break;
      if (ns < best) best = ns;
      if (depth > 1) {
        // In turns with the above, so that both see the same spells of the host.
        const t0 = NOW();
        read_ahead(mib, depth, false, seed);
        const ahead = NOW() - t0;
        if (ahead < bestAhead) bestAhead = ahead;
      }
    }
    if (depth > 1) {
      const wrong = read_ahead(mib, depth, true, seed);
      if (bad < 0) bad = wrong;
      cons.s("blkbench: reading ahead with ").u(depth).s(" requests in flight").nl();
      rate("sequential read-ahead", mib << 20, bestAhead);
    }
    rate("sequential read", mib << 20, best);
    if (bad >= 0) {
      cons.s("blkbench: verify FAILED at sector ").i(bad).nl();
      shutdown(SHUTDOWN_crash);
    }
    cons.s("blkbench: verify ok (").u(mib).s(" MiB)").nl();
  }
  if (!only_write && !only_verify) {
    const ios = cmdline_arg("ios", 2000);
    let x: u64 = seed * 2654435761 + 1;
    const span = sectors / 8;
    const t0 = NOW();
    for (let i: u64 = 0; i < ios; i++) {
      x = x * 6364136223846793005 + 1442695040888963407;
      const r = blkfront_read(((x >> 33) % span) * 8, bufs, 4096);
      if (r < 0) fail("random read", r);
    }
    const ns = NOW() - t0;
    cons
      .s("blkbench: random 4 KiB reads ")
      .u(ios)
      .s(" in ")
      .u(ns / 1000000)
      .s(" ms (")
      .u(ns == 0 ? 0 : (ios * 1000000000) / ns)
      .s(" IOPS)")
      .nl();
  }
  if (cmdline_has("hold")) {
    cons.s("blkbench: holding xvda").nl();
    while (!blkfront_follow_backend()) xenbus_wait_for_watch();
    cons.s("blkbench: xvda was unplugged; powering off").nl();
  }
  shutdown(SHUTDOWN_poweroff);
}
