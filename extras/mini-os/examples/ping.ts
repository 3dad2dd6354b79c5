// ping: a guest on the network through netfront. "ip=10.0.0.1" is its
// address. With "peer=10.0.0.2" it pings the peer `count` times (default 4)
// as ping(8) prints it, checks a UDP echo on port 7, and with "udp=N" sends
// N datagrams of `size` bytes (default 1024) to the peer's discard port 9
// and reports how many arrived and how fast; then it powers off. Without a
// peer (or with "serve") it answers: ARP, pings, UDP echo on port 7, and
// counts what arrives on port 9 (a "END" datagram asks for the count);
// with "suspend" it also handles Xen's suspend request, connecting its vif
// again when it resumes in a new domain.
import {
  cons,
  domid,
  NOW,
  shutdown,
  SHUTDOWN_poweroff,
  SHUTDOWN_crash,
  cmdline_arg,
  cmdline_has,
  do_hypervisor_callback,
  local_irq_enable,
  xenbus_init,
  xenbus_poll_watch,
  xenbus_read,
  xenbus_reply,
  xenbus_watch,
  xenbus_write,
  str_eq,
  suspend,
} from "../lib/index";
// Drivers are imported by the kernels that use them: their static pages
// would otherwise be in every kernel.
import {
  netfront_init,
  netfront_mac,
  netfront_wait,
  netfront_check_backend,
  netfront_follow_backend,
} from "../lib/netfront";
import {
  ip_init,
  ip_str,
  cmdline_ip,
  ping,
  net_poll,
  udp_send,
  udp_recv,
  udp_dropped,
} from "../lib/ip";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

const buf = memory.data(2048);
const reply = memory.data(2048);
const from = memory.data(16);
const SECOND: u64 = 1000000000;

function hex2(b: u32): string {
  return (b < 16 ? "0" : "") + b.toString(16);
}

function str_at(p: usize, s: string): u32 {
  for (let i = 0; i < s.length; i++) store<u8>(p + i, <u8>s.charCodeAt(i));
  return <u32>s.length;
}

function is(p: usize, n: i32, s: string): bool {
  if (n < s.length) return false;
  for (let i = 0; i < s.length; i++) if (load<u8>(p + i) != <u8>s.charCodeAt(i)) return false;
  return true;
}

/**
 * With `suspend` on the command line: the server handles Xen's suspend
 * request (control/shutdown), so that xl save asks it to suspend itself
 * and it connects its vif again in the new domain (mini-os's netfront).
 */
function follow_control(): void {
  // Every event waiting is taken (each one read would leave the rest to
  // pile up and, past the queue's 16, be dropped); then the nodes are read.
  let events = 0;
  while (xenbus_poll_watch() != 0) events++;
  if (events == 0) return;
  if (netfront_follow_backend()) {
    cons.s("ping: the vif was unplugged; powering off").nl();
    shutdown(SHUTDOWN_poweroff);
  }
  if (xenbus_read("control/shutdown") < 0 || !str_eq(xenbus_reply(), "suspend")) return;
  xenbus_write("control/shutdown", "");
  const rc = suspend();
  cons.s("ping: resumed (suspend returned ").i(rc).s(")").nl();
}

function serve(): void {
  let count: u32 = 0;
  let bytes: u64 = 0;
  const suspends = cmdline_has("suspend");
  if (suspends) {
    xenbus_watch("control/shutdown", "shutdown");
    xenbus_write("control/feature-suspend", "1");
  }
  while (true) {
    if (suspends) follow_control();
    else if (netfront_check_backend()) {
      cons.s("ping: the vif was unplugged; powering off").nl();
      shutdown(SHUTDOWN_poweroff);
    }
    const n = udp_recv(buf, from, 0);
    if (n < 0) {
      netfront_wait(0);
      continue;
    }
    const src = load<u32>(from);
    const sport = load<u32>(from + 4);
    const dport = load<u32>(from + 8);
    if (dport == 7) {
      udp_send(src, 7, sport, buf, <u32>n);
    } else if (dport == 9) {
      if (is(buf, n, "END")) {
        cons.s("ping: port 9 got ").u(count).s(" datagrams, ").u(bytes).s(" bytes").nl();
        const m = str_at(buf, "GOT " + count.toString() + " " + bytes.toString());
        udp_send(src, 9, sport, buf, m);
        count = 0;
        bytes = 0;
      } else {
        count++;
        bytes += <u64>n;
      }
    }
  }
}

export function _start(): void {
  local_irq_enable(0);
  xenbus_init();
  const rc = netfront_init();
  if (rc < 0) {
    cons.s("ping: no network (").i(rc).s(")").nl();
    shutdown(SHUTDOWN_crash);
  }
  const me = cmdline_ip("ip");
  if (me == 0) {
    cons.s("ping: give me an address: ip=a.b.c.d").nl();
    shutdown(SHUTDOWN_crash);
  }
  ip_init(me);
  const m = netfront_mac();
  let macs = hex2(load<u8>(m));
  for (let i = 1; i < 6; i++) macs += ":" + hex2(load<u8>(m + i));
  cons.s("ping d").u(domid()).s(": ").s(macs).s(" is ").s(ip_str(me)).nl();
  const peer = cmdline_ip("peer");
  if (peer == 0 || cmdline_has("serve")) serve();

  const count = cmdline_arg("count", 4);
  let got: u64 = 0;
  // Made once: the runtime never frees, so nothing in the loop may allocate
  // (a new string a ping ran the heap out after some 19,000 pings).
  const peerStr = ip_str(peer);
  cons.s("PING ").s(peerStr).s(" 56(84) bytes of data.").nl();
  for (let seq: u64 = 1; seq <= count; seq++) {
    const rtt = ping(peer, <u32>seq, 2 * SECOND);
    if (rtt < 0) {
      cons.s("no answer from ").s(peerStr).s(": icmp_seq=").u(seq).nl();
      continue;
    }
    got++;
    const us = <u64>rtt / 1000;
    const frac = us % 1000;
    cons.s("64 bytes from ").s(peerStr).s(": icmp_seq=").u(seq).s(" ttl=64 time=");
    cons.u(us / 1000).s(".");
    if (frac < 100) cons.s("0");
    if (frac < 10) cons.s("0");
    cons.u(frac).s(" ms").nl();
  }
  cons.s("--- ").s(ip_str(peer)).s(" ping statistics ---").nl();
  cons
    .u(count)
    .s(" packets transmitted, ")
    .u(got)
    .s(" received, ")
    .u(count == 0 ? 0 : ((count - got) * 100) / count)
    .s("% packet loss")
    .nl();

  // UDP echo.
  const hello = str_at(buf, "hello over udp");
  if (udp_send(peer, 4000, 7, buf, hello) < 0) shutdown(SHUTDOWN_crash);
  const n = udp_recv(buf, from, 2 * SECOND);
  if (n < 0) cons.s("udp echo: no answer").nl();
  else cons.s("udp echo: '").raw(buf, n).s("'").nl();

  const udp = cmdline_arg("udp", 0);
  if (udp > 0) {
    const size = <u32>cmdline_arg("size", 1024);
    for (let i: u32 = 0; i < size; i++) store<u8>(buf + i, <u8>i);
    const t0 = NOW();
    for (let i: u64 = 0; i < udp; i++) udp_send(peer, 4001, 9, buf, size);
    let answer: i32 = -1;
    for (let tries = 0; tries < 6 && answer < 0; tries++) {
      udp_send(peer, 4001, 9, buf, str_at(buf, "END"));
      // Skip anything but the count.
      const end = NOW() + SECOND / 2;
      while (NOW() < end) {
        const k = udp_recv(reply, from, end - NOW());
        if (k > 0 && is(reply, k, "GOT ")) {
          answer = k;
          break;
        }
      }
      for (let i: u32 = 0; i < size; i++) store<u8>(buf + i, <u8>i);
    }
    const ns = NOW() - t0;
    cons
      .s("udp: sent ")
      .u(udp)
      .s(" datagrams of ")
      .u(size)
      .s(" bytes in ")
      .u(ns / 1000)
      .s(" us; peer says '");
    if (answer > 0) cons.raw(reply, answer);
    cons.s("'").nl();
  }
  net_poll();
  cons.s("ping: done (").u(udp_dropped).s(" datagrams dropped here)").nl();
  shutdown(SHUTDOWN_poweroff);
}
