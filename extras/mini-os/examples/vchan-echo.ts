// vchan-echo: a vchan server that echoes what it reads, or a client that
// sends a pattern through an echo server and checks what comes back.
//
//   role=server peer=C [size=N]  serves domain C at data/vchan/echo (rings of N
//                                bytes, default 65536); echoes until C closes
//   role=client peer=S [bytes=N] [nocheck]
//                                connects to S's /local/domain/S/data/vchan/echo,
//                                sends N bytes (default 1 MiB) of the pattern
//                                byte i = (i * 31 + 7) & 255, reads the echo
//                                back, and prints both FNV-1a checksums
//                                (nocheck: neither pattern nor checksums, for
//                                benchmarks)
import {
  cons,
  domid,
  shutdown,
  SHUTDOWN_poweroff,
  SHUTDOWN_crash,
  cmdline_arg,
  cmdline_has,
  local_irq_enable,
  do_hypervisor_callback,
  xenbus_init,
  vchan_server_init,
  vchan_client_init,
  vchan_read,
  vchan_write,
  vchan_wait,
  vchan_is_open,
  vchan_close,
} from "../lib/index";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

const BUF: u32 = 16384;
const buf = memory.data(<i32>BUF);
const out = memory.data(<i32>BUF);

function fail(what: string, rc: i32): void {
  cons.s("vchan-echo: ").s(what).s(" failed: ").i(rc).nl();
  shutdown(SHUTDOWN_crash);
}

/** FNV-1a over `n` bytes at `p`, continuing from `h`. */
function fnv(h: u32, p: usize, n: u32): u32 {
  for (let i: u32 = 0; i < n; i++) h = (h ^ load<u8>(p + i)) * 16777619;
  return h;
}

function serve(client: u32, size: u32): void {
  const rc = vchan_server_init(client, "data/vchan/echo", size, size);
  if (rc < 0) fail("server_init", rc);
  cons.s("vchan-echo: d").u(domid()).s(" serves d").u(client).s(" at data/vchan/echo").nl();
  let total: u64 = 0;
  let pending: u32 = 0;
  let sent: u32 = 0;
  while (true) {
    if (sent < pending) {
      const w = vchan_write(buf + sent, pending - sent);
      sent += w;
      if (w > 0) continue;
    } else {
      pending = vchan_read(buf, BUF);
      sent = 0;
      total += pending;
      if (pending > 0) continue;
      if (!vchan_is_open()) break;
    }
    vchan_wait();
  }
  cons.s("vchan-echo: d").u(domid()).s(" echoed ").u(total).s(" bytes; the client closed").nl();
  vchan_close();
}

function client(server: u32, bytes: u64, check: bool): void {
  // The server's domain path, written out without allocating in the loop.
  let path = "/local/domain/";
  path += server.toString();
  path += "/data/vchan/echo";
  const rc = vchan_client_init(server, path);
  if (rc < 0) fail("client_init", rc);
  let sent: u64 = 0;
  let got: u64 = 0;
  let h_sent: u32 = 2166136261;
  let h_got: u32 = 2166136261;
  while (got < bytes) {
    let progress = false;
    if (sent < bytes) {
      const left = bytes - sent;
      const n: u32 = left < <u64>BUF ? <u32>left : BUF;
      if (check) for (let i: u32 = 0; i < n; i++) store<u8>(out + i, <u8>((sent + i) * 31 + 7));
      const w = vchan_write(out, n);
      if (check) h_sent = fnv(h_sent, out, w);
      sent += w;
      if (w > 0) progress = true;
    }
    const r = vchan_read(buf, BUF);
    if (r > 0) {
      if (check) h_got = fnv(h_got, buf, r);
      got += r;
      progress = true;
    }
    if (!progress) {
      if (!vchan_is_open()) {
        cons
          .s("vchan-echo: d")
          .u(domid())
          .s(" saw the server close after ")
          .u(got)
          .s(" bytes")
          .nl();
        return;
      }
      vchan_wait();
    }
  }
  cons
    .s("vchan-echo: d")
    .u(domid())
    .s(" sent ")
    .u(sent)
    .s(" bytes, fnv ")
    .u(h_sent)
    .s("; echo fnv ")
    .u(h_got)
    .s(h_sent == h_got ? " ok" : " MISMATCH")
    .nl();
  vchan_close();
}

export function _start(): void {
  local_irq_enable(0);
  xenbus_init();
  const peer = <u32>cmdline_arg("peer", 0);
  if (cmdline_has("role=server")) serve(peer, <u32>cmdline_arg("size", 65536));
  else client(peer, cmdline_arg("bytes", 1 << 20), !cmdline_has("nocheck"));
  shutdown(SHUTDOWN_poweroff);
}
