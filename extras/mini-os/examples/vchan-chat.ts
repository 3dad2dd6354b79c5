// vchan-chat: two domains take turns sending numbered lines over a vchan in
// packet mode, each printing what it receives.
//
//   role=server peer=C [lines=N]  offers data/vchan/chat to C and answers each line
//   role=client peer=S [lines=N]  connects to S's chat and says N lines
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
  vchan_send,
  vchan_recv,
  vchan_wait,
  vchan_is_open,
  vchan_close,
} from "../lib/index";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

// A packet: a length byte, then up to 63 bytes of text.
const PACKET: u32 = 64;
const msg = memory.data(<i32>PACKET);

function fail(what: string, rc: i32): void {
  cons.s("vchan-chat: ").s(what).s(" failed: ").i(rc).nl();
  shutdown(SHUTDOWN_crash);
}

let msg_len: u32 = 0;

function put(s: string): void {
  for (let i = 0; i < s.length && msg_len < PACKET - 1; i++)
    store<u8>(msg + 1 + msg_len++, <u8>s.charCodeAt(i));
}

/** Fills `msg` with "d<me> says line <n>". */
function compose(n: u32): void {
  msg_len = 0;
  put("d");
  put(domid().toString());
  put(" says line ");
  put(n.toString());
  store<u8>(msg, <u8>msg_len);
}

/** Sends `msg`, waiting for room; false if the peer went away. */
function say(): bool {
  while (!vchan_send(msg, PACKET)) {
    if (!vchan_is_open()) return false;
    vchan_wait();
  }
  return true;
}

/** Receives one packet into `msg` and prints it; false if the peer went away. */
function hear(): bool {
  while (!vchan_recv(msg, PACKET)) {
    if (!vchan_is_open()) return false;
    vchan_wait();
  }
  cons
    .s("vchan-chat: d")
    .u(domid())
    .s(" heard '")
    .raw(msg + 1, load<u8>(msg))
    .s("'")
    .nl();
  return true;
}

export function _start(): void {
  local_irq_enable(0);
  xenbus_init();
  const peer = <u32>cmdline_arg("peer", 0);
  const lines = <u32>cmdline_arg("lines", 3);
  if (cmdline_has("role=server")) {
    const rc = vchan_server_init(peer, "data/vchan/chat", 1024, 1024);
    if (rc < 0) fail("server_init", rc);
    cons.s("vchan-chat: d").u(domid()).s(" waits for d").u(peer).nl();
    for (let n: u32 = 1; n <= lines && hear(); n++) {
      compose(n);
      if (!say()) break;
    }
  } else {
    let path = "/local/domain/";
    path += peer.toString();
    path += "/data/vchan/chat";
    const rc = vchan_client_init(peer, path);
    if (rc < 0) fail("client_init", rc);
    for (let n: u32 = 1; n <= lines; n++) {
      compose(n);
      if (!say() || !hear()) break;
    }
  }
  vchan_close();
  shutdown(SHUTDOWN_poweroff);
}
