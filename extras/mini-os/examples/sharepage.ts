// sharepage: domain A grants a page to domain B; B reads A's message with a
// grant copy and answers through a page of its own that it grants to A.
//
//   role=offer peer=B      grants a writable page to B, offers a port, prints
//                          "ref R port P", waits for B's answer, reads it
//   role=fetch peer=A ref=R port=P
//                          reads A's page, grants its answer to A, writes the
//                          answer's ref into A's page (offset 2048), notifies A
import {
  cons,
  domid,
  block,
  shutdown,
  SHUTDOWN_poweroff,
  SHUTDOWN_crash,
  cmdline_arg,
  cmdline_has,
  local_irq_enable,
  do_hypervisor_callback,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  notify_remote_via_evtchn,
  fire_count,
  gnttab_grant_access,
  gnttab_end_access,
  gnttab_copy_from,
  gnttab_copy_to,
  virt_to_gfn,
} from "../lib/index";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

const page = memory.data(4096, 4096);
const buf = memory.data(256);
const MAILBOX: u32 = 2048;

function fail(what: string, rc: i32): void {
  cons.s("sharepage: ").s(what).s(" failed: ").i(rc).nl();
  shutdown(SHUTDOWN_crash);
}

/** Writes `s` then decimal `n` then `t` at `at`; returns the length. */
function put(at: usize, s: string, n: u32, t: string): u32 {
  let len: u32 = 0;
  for (let i = 0; i < s.length; i++) store<u8>(at + len++, <u8>s.charCodeAt(i));
  let div: u32 = 1;
  while (n / div >= 10) div *= 10;
  for (; div > 0; div /= 10) store<u8>(at + len++, <u8>(48 + ((n / div) % 10)));
  for (let i = 0; i < t.length; i++) store<u8>(at + len++, <u8>t.charCodeAt(i));
  store<u8>(at + len, 0);
  return len;
}

function strlen(at: usize, max: u32): u32 {
  let n: u32 = 0;
  while (n < max && load<u8>(at + n) != 0) n++;
  return n;
}

function offer(peer: u32): void {
  put(page, "hello d", peer, ", this is a page of mine");
  const ref = gnttab_grant_access(peer, virt_to_gfn(page), false);
  if (ref < 0) fail("grant_access", ref);
  const port = evtchn_alloc_unbound(peer);
  if (port < 0) fail("alloc_unbound", port);
  cons.s("sharepage: d").u(domid()).s(" offers ref ").u(ref).s(" port ").u(port).nl();
  while (fire_count(<u32>port) == 0) block();
  const answer = load<u32>(page + MAILBOX);
  const st = gnttab_copy_from(peer, answer, 0, buf, 128);
  if (st != 0) fail("copy of the answer", st);
  cons.s("sharepage: d").u(domid()).s(" got answer: '").raw(buf, strlen(buf, 128)).s("'").nl();
  if (!gnttab_end_access(<u32>ref)) fail("end_access", -1);
  notify_remote_via_evtchn(<u32>port);
}

function fetch(peer: u32, ref: u32, remote: u32): void {
  const port = evtchn_bind_interdomain(peer, remote);
  if (port < 0) fail("bind_interdomain", port);
  while (fire_count(<u32>port) == 0) block();
  const seen = fire_count(<u32>port);
  const st = gnttab_copy_from(peer, ref, 0, buf, 128);
  if (st != 0) fail("copy of the offer", st);
  cons.s("sharepage: d").u(domid()).s(" read: '").raw(buf, strlen(buf, 128)).s("'").nl();
  put(page, "thanks d", peer, ", from your neighbour");
  const mine = gnttab_grant_access(peer, virt_to_gfn(page), true);
  if (mine < 0) fail("grant_access", mine);
  store<u32>(buf, <u32>mine);
  const st2 = gnttab_copy_to(buf, peer, ref, MAILBOX, 4);
  if (st2 != 0) fail("copy into the mailbox", st2);
  notify_remote_via_evtchn(<u32>port);
  while (fire_count(<u32>port) == seen) block();
  if (!gnttab_end_access(<u32>mine)) fail("end_access", -1);
  cons.s("sharepage: d").u(domid()).s(" done").nl();
}

export function _start(): void {
  local_irq_enable(0);
  const peer = <u32>cmdline_arg("peer", 0);
  if (cmdline_has("role=offer")) offer(peer);
  else fetch(peer, <u32>cmdline_arg("ref", 0), <u32>cmdline_arg("port", 0));
  shutdown(SHUTDOWN_poweroff);
}
