// The smallest useful IPv4 for netfront: ARP (answering for our address,
// resolving others, a small cache), ICMP echo (answering pings, sending
// them), and UDP (sending; a small queue of received datagrams). Addresses
// are u32 in host order (10.0.0.1 is 0x0a000001).
import { netfront_mac, netfront_send, netfront_recv, netfront_wait } from "./netfront";
import { NOW } from "./sched";
import { cmdline_ptr, cmdline_len, cmdline_value } from "./kernel";

const ETH_HLEN: u32 = 14;
const frame = memory.data(2048);
const out = memory.data(2048);
const ARP_N: u32 = 16;
const arp_ip = memory.data(<i32>(ARP_N * 4));
const arp_mac = memory.data(<i32>(ARP_N * 8));
let arp_next: u32 = 0;
let my_ip: u32 = 0;
let ip_id: u32 = 1;

// Echo replies seen: the last one's sequence number and arrival time.
let echo_seq: i32 = -1;
let echo_at: u64 = 0;

// Received UDP datagrams: a ring of UDP_N slots.
const UDP_N: u32 = 32;
const UDP_SLOT: u32 = 2048;
const udp_q = memory.data(<i32>(UDP_N * UDP_SLOT));
const udp_len = memory.data(<i32>(UDP_N * 4));
const udp_port = memory.data(<i32>(UDP_N * 4));
const udp_src = memory.data(<i32>(UDP_N * 8));
let udp_head: u32 = 0;
let udp_count: u32 = 0;
/** Datagrams dropped because the queue was full. */
export let udp_dropped: u32 = 0;

function be16(p: usize): u32 {
  return ((<u32>load<u8>(p)) << 8) | load<u8>(p + 1);
}
function set16(p: usize, v: u32): void {
  store<u8>(p, <u8>(v >> 8));
  store<u8>(p + 1, <u8>v);
}
function be32(p: usize): u32 {
  return (be16(p) << 16) | be16(p + 2);
}
function set32(p: usize, v: u32): void {
  set16(p, v >> 16);
  set16(p + 2, v & 0xffff);
}

/** The Internet checksum of `len` bytes at `p`. */
function csum(p: usize, len: u32): u32 {
  let s: u32 = 0;
  let i: u32 = 0;
  for (; i + 1 < len; i += 2) s += be16(p + i);
  if (i < len) s += (<u32>load<u8>(p + i)) << 8;
  while (s >> 16 != 0) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

export function ip_init(ip: u32): void {
  my_ip = ip;
}

/** Prints an address in dotted form into a string (setup and reports only). */
export function ip_str(ip: u32): string {
  return (
    (ip >> 24).toString() +
    "." +
    ((ip >> 16) & 255).toString() +
    "." +
    ((ip >> 8) & 255).toString() +
    "." +
    (ip & 255).toString()
  );
}

function arp_lookup(ip: u32): usize {
  for (let i: u32 = 0; i < ARP_N; i++)
    if (load<u32>(arp_ip + i * 4) == ip && ip != 0) return arp_mac + i * 8;
  return 0;
}

function arp_learn(ip: u32, mac: usize): void {
  let slot = arp_lookup(ip);
  if (slot == 0) {
    const i = arp_next++ % ARP_N;
    store<u32>(arp_ip + i * 4, ip);
    slot = arp_mac + i * 8;
  }
  memory.copy(slot, mac, 6);
}

function eth_header(dst: usize, type: u32): void {
  memory.copy(out, dst, 6);
  memory.copy(out + 6, netfront_mac(), 6);
  set16(out + 12, type);
}

function arp_send(op: u32, tha: usize, tpa: u32): void {
  const bcast = memory.data<u8>([255, 255, 255, 255, 255, 255]);
  eth_header(op == 1 ? bcast : tha, 0x0806);
  const a = out + ETH_HLEN;
  set16(a, 1);
  set16(a + 2, 0x0800);
  store<u8>(a + 4, 6);
  store<u8>(a + 5, 4);
  set16(a + 6, op);
  memory.copy(a + 8, netfront_mac(), 6);
  set32(a + 14, my_ip);
  if (op == 1) memory.fill(a + 18, 0, 6);
  else memory.copy(a + 18, tha, 6);
  set32(a + 24, tpa);
  netfront_send(out, ETH_HLEN + 28);
}

/** Handles every frame that has arrived; returns how many. */
export function net_poll(): u32 {
  let n: u32 = 0;
  while (true) {
    const len = netfront_recv(frame, 2048);
    if (len == 0) break;
    n++;
    if (len < ETH_HLEN) continue;
    const type = be16(frame + 12);
    const p = frame + ETH_HLEN;
    if (type == 0x0806 && len >= ETH_HLEN + 28) {
      const op = be16(p + 6);
      const spa = be32(p + 14);
      arp_learn(spa, p + 8);
      if (op == 1 && be32(p + 24) == my_ip) arp_send(2, p + 8, spa);
      continue;
    }
    if (type != 0x0800 || len < ETH_HLEN + 20) continue;
    const ihl = ((<u32>load<u8>(p)) & 15) * 4;
    const total = be16(p + 2);
    if (ihl < 20 || total < ihl || ETH_HLEN + total > len || be32(p + 16) != my_ip) continue;
    const proto = load<u8>(p + 9);
    const src = be32(p + 12);
    const l4 = p + ihl;
    const l4len = total - ihl;
    arp_learn(src, frame + 6);
    if (proto == 1 && l4len >= 8) {
      const t = load<u8>(l4);
      if (t == 8) {
        // Echo request: answer with the same id, sequence and data.
        memory.copy(out + ETH_HLEN + 20, l4, l4len);
        const r = out + ETH_HLEN + 20;
        store<u8>(r, 0);
        set16(r + 2, 0);
        set16(r + 2, csum(r, l4len));
        ip_send(src, 1, l4len);
      } else if (t == 0) {
        echo_seq = <i32>be16(l4 + 6);
        echo_at = NOW();
      }
    } else if (proto == 17 && l4len >= 8) {
      const dlen = be16(l4 + 4);
      if (dlen < 8 || dlen > l4len) continue;
      if (udp_count == UDP_N) {
        udp_dropped++;
        continue;
      }
      const i = (udp_head + udp_count) % UDP_N;
      const n8 = dlen - 8 < UDP_SLOT ? dlen - 8 : UDP_SLOT;
      memory.copy(udp_q + i * UDP_SLOT, l4 + 8, n8);
      store<u32>(udp_len + i * 4, n8);
      store<u32>(udp_port + i * 4, be16(l4 + 2));
      store<u32>(udp_src + i * 8, src);
      store<u32>(udp_src + i * 8 + 4, be16(l4));
      udp_count++;
    }
  }
  return n;
}

/** Resolves `ip` to a MAC by ARP, waiting up to `timeout_ns`; 0 on failure. */
export function arp_resolve(ip: u32, timeout_ns: u64): usize {
  let m = arp_lookup(ip);
  if (m != 0) return m;
  const end = NOW() + timeout_ns;
  let next: u64 = 0;
  while (NOW() < end) {
    if (NOW() >= next) {
      arp_send(1, 0, ip);
      next = NOW() + 200000000;
    }
    netfront_wait(next < end ? next : end);
    net_poll();
    m = arp_lookup(ip);
    if (m != 0) return m;
  }
  return 0;
}

/** Sends the IPv4 packet whose payload (`len` bytes) is already at out+34. */
function ip_send(dst: u32, proto: u32, len: u32): i32 {
  const mac = arp_resolve(dst, 3000000000);
  if (mac == 0) return -1;
  eth_header(mac, 0x0800);
  const h = out + ETH_HLEN;
  store<u8>(h, 0x45);
  store<u8>(h + 1, 0);
  set16(h + 2, 20 + len);
  set16(h + 4, ip_id++ & 0xffff);
  set16(h + 6, 0x4000);
  store<u8>(h + 8, 64);
  store<u8>(h + 9, <u8>proto);
  set16(h + 10, 0);
  set32(h + 12, my_ip);
  set32(h + 16, dst);
  set16(h + 10, csum(h, 20));
  return netfront_send(out, ETH_HLEN + 20 + len);
}

/** Sends an echo request with `seq` and waits for its reply; the round trip in ns, or -1. */
export function ping(dst: u32, seq: u32, timeout_ns: u64): i64 {
  if (arp_resolve(dst, timeout_ns) == 0) return -1;
  const r = out + ETH_HLEN + 20;
  store<u8>(r, 8);
  store<u8>(r + 1, 0);
  set16(r + 2, 0);
  set16(r + 4, 0x7473);
  set16(r + 6, seq);
  for (let i: u32 = 8; i < 64; i++) store<u8>(r + i, <u8>i);
  set16(r + 2, csum(r, 64));
  const t0 = NOW();
  if (ip_send(dst, 1, 64) < 0) return -1;
  const end = t0 + timeout_ns;
  while (NOW() < end) {
    net_poll();
    if (echo_seq == <i32>seq) return <i64>(echo_at - t0);
    netfront_wait(end);
  }
  return -1;
}

/** Sends a UDP datagram of `len` bytes at `data` from port `sport` to `dst`:`dport`. */
export function udp_send(dst: u32, sport: u32, dport: u32, data: usize, len: u32): i32 {
  if (len > 1472) return -1;
  const u = out + ETH_HLEN + 20;
  set16(u, sport);
  set16(u + 2, dport);
  set16(u + 4, 8 + len);
  set16(u + 6, 0);
  memory.copy(u + 8, data, len);
  return ip_send(dst, 17, 8 + len);
}

/**
 * Takes the oldest received datagram into `buf` (up to 2048 bytes), waiting
 * up to `timeout_ns`: its length, or -1. `from` gets the sender's address
 * and port, `to_port` (if not 0) the port it was sent to.
 */
export function udp_recv(buf: usize, from: usize, timeout_ns: u64): i32 {
  const end = NOW() + timeout_ns;
  while (true) {
    net_poll();
    if (udp_count > 0) {
      const i = udp_head;
      udp_head = (udp_head + 1) % UDP_N;
      udp_count--;
      const n = load<u32>(udp_len + i * 4);
      memory.copy(buf, udp_q + i * UDP_SLOT, n);
      if (from != 0) {
        store<u32>(from, load<u32>(udp_src + i * 8));
        store<u32>(from + 4, load<u32>(udp_src + i * 8 + 4));
        store<u32>(from + 8, load<u32>(udp_port + i * 4));
      }
      return <i32>n;
    }
    if (NOW() >= end) return -1;
    netfront_wait(end);
  }
}

/** Parses "a.b.c.d" from the command line's `key=` value; 0 if absent or malformed. */
export function parse_ip(p: usize, len: i32): u32 {
  let ip: u32 = 0;
  let part: u32 = 0;
  let parts = 0;
  let digits = 0;
  for (let i = 0; i < len; i++) {
    const c = <u32>load<u8>(p + i);
    if (c == 46) {
      if (digits == 0 || part > 255) return 0;
      ip = (ip << 8) | part;
      part = 0;
      digits = 0;
      parts++;
    } else if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      digits++;
    } else break;
  }
  if (parts != 3 || digits == 0 || part > 255) return 0;
  return (ip << 8) | part;
}

/** The address after `key=` on the command line; 0 if absent or malformed. */
export function cmdline_ip(key: string): u32 {
  const at = cmdline_value(key);
  return at < 0 ? 0 : parse_ip(cmdline_ptr() + at, cmdline_len() - at);
}
