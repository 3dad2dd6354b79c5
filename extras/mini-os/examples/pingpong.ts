// pingpong: two domains bounce an event over an interdomain event channel
// and report the round trip. Add `fifo` to either to use the FIFO ABI.
//
//   role=pong peer=B n=N   offers a port to domain B, prints it, answers N events
//   role=ping peer=A port=P n=N
//                          binds to A's port P, sends N events one at a time,
//                          waits for each answer, prints median and mean round trip
import {
  cons,
  domid,
  NOW,
  block,
  shutdown,
  SHUTDOWN_poweroff,
  SHUTDOWN_crash,
  cmdline_arg,
  cmdline_has,
  local_irq_enable,
  do_hypervisor_callback,
  init_events_fifo,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  notify_remote_via_evtchn,
  set_handler,
  fire_count,
} from "../lib/index";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

// Round trips in 20 ns buckets up to 200 µs: a median without sorting or allocating.
const BUCKET_NS: u64 = 20;
const BUCKETS: u32 = 10000;
const hist = memory.data(<i32>BUCKETS * 4);

function fail(what: string, rc: i32): void {
  cons.s("pingpong: ").s(what).s(" failed: ").i(rc).nl();
  shutdown(SHUTDOWN_crash);
}

function pong(peer: u32, n: u32): void {
  const port = evtchn_alloc_unbound(peer);
  if (port < 0) fail("alloc_unbound", port);
  set_handler(<u32>port, (p: u32): void => {
    notify_remote_via_evtchn(p);
  });
  cons.s("pingpong: d").u(domid()).s(" offers port ").u(port).s(" to d").u(peer).nl();
  while (fire_count(<u32>port) < n) block();
  cons.s("pingpong: d").u(domid()).s(" answered ").u(n).s(" events").nl();
}

function ping(peer: u32, remote: u32, n: u32): void {
  const port = evtchn_bind_interdomain(peer, remote);
  if (port < 0) fail("bind_interdomain", port);
  // The bind itself raises the new port once; take that event first.
  while (fire_count(<u32>port) == 0) block();
  let seen = fire_count(<u32>port);
  let total: u64 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const t0 = NOW();
    notify_remote_via_evtchn(<u32>port);
    while (fire_count(<u32>port) == seen) block();
    seen = fire_count(<u32>port);
    const rtt = NOW() - t0;
    total += rtt;
    let b = <u32>(rtt / BUCKET_NS);
    if (b >= BUCKETS) b = BUCKETS - 1;
    store<u32>(hist + b * 4, load<u32>(hist + b * 4) + 1);
  }
  let acc: u32 = 0;
  let median: u64 = 0;
  for (let b: u32 = 0; b < BUCKETS; b++) {
    acc += load<u32>(hist + b * 4);
    if (acc * 2 >= n) {
      median = <u64>b * BUCKET_NS + BUCKET_NS / 2;
      break;
    }
  }
  cons
    .s("pingpong: d")
    .u(domid())
    .s(" ")
    .u(n)
    .s(" round trips, median ")
    .u(median)
    .s(" ns, mean ")
    .u(n > 0 ? total / <u64>n : 0)
    .s(" ns")
    .nl();
}

export function _start(): void {
  local_irq_enable(0);
  if (cmdline_has("fifo")) {
    const rc = init_events_fifo();
    if (rc < 0) fail("init_events_fifo", rc);
  }
  const peer = <u32>cmdline_arg("peer", 0);
  const n = <u32>cmdline_arg("n", 1000);
  if (cmdline_has("role=pong")) pong(peer, n);
  else ping(peer, <u32>cmdline_arg("port", 0), n);
  shutdown(SHUTDOWN_poweroff);
}
