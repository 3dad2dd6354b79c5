// ringtest: lib/ring.ts against Dom0's BackRing (dom0/drivers/ring.ts). It
// grants Dom0 a ring page, offers a port, and prints both; starting at
// index `start` (default near 2^32, so the indices wrap), it sends `n`
// requests (the u32 i + 1000 each), at most a ring's worth in flight, and
// checks that each response carries twice its request. Dom0's side is
// test/ring.test.ts.
import {
  cons,
  block,
  shutdown,
  SHUTDOWN_poweroff,
  SHUTDOWN_crash,
  cmdline_arg,
  do_hypervisor_callback,
  local_irq_enable,
  gnttab_grant_access,
  virt_to_gfn,
  evtchn_alloc_unbound,
  notify_remote_via_evtchn,
  unmask_evtchn,
  fire_count,
} from "../lib/index";
import {
  front_ring_at,
  front_ring_init,
  ring_slot,
  ring_free_requests,
  ring_push_requests,
  ring_unconsumed_responses,
  ring_final_check_for_responses,
} from "../lib/ring";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

const page = memory.data(4096, 4096);

export function _start(): void {
  local_irq_enable(0);
  const start = <u32>cmdline_arg("start", 4294967200);
  const n = <u32>cmdline_arg("n", 1000);
  const r = front_ring_at(memory.data(24, 8));
  front_ring_init(r, page, 4096, 16, start);
  const ref = gnttab_grant_access(0, virt_to_gfn(page), false);
  const port = evtchn_alloc_unbound(0);
  if (ref < 0 || port < 0) shutdown(SHUTDOWN_crash);
  unmask_evtchn(<u32>port);
  cons.s("ringtest: ref ").i(ref).s(" port ").i(port).s(" size ").u(r.size).nl();
  let sent: u32 = 0;
  let got: u32 = 0;
  while (got < n) {
    while (sent < n && ring_free_requests(r) > 0) {
      store<u32>(ring_slot(r, r.req_prod_pvt), sent + 1000);
      r.req_prod_pvt++;
      sent++;
    }
    if (ring_push_requests(r)) notify_remote_via_evtchn(<u32>port);
    const seen = fire_count(<u32>port);
    while (ring_unconsumed_responses(r) > 0) {
      const v = load<u32>(ring_slot(r, r.rsp_cons));
      if (v != (got + 1000) * 2) {
        cons.s("ringtest: response ").u(got).s(" is ").u(v).nl();
        shutdown(SHUTDOWN_crash);
      }
      r.rsp_cons++;
      got++;
    }
    // Wait only while requests are out; with none, go and send more.
    if (got < n && r.req_prod_pvt != r.rsp_cons && !ring_final_check_for_responses(r)) {
      while (fire_count(<u32>port) == seen && ring_unconsumed_responses(r) == 0) block();
    }
  }
  cons.s("ringtest: ok ").u(n).s(" through ").u(r.req_prod_pvt).nl();
  shutdown(SHUTDOWN_poweroff);
}
