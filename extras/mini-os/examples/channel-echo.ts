// channel-echo: a guest agent on a PV channel (xl.cfg's channel=). It opens
// the channel named by its command line (name=..., org.tsxen.echo by
// default) and answers each line the host sends over the channel's socket
// with the line in capitals, until it reads "quit". With `suspend` on its
// command line it handles Xen's suspend request (control/shutdown), and
// its channel connects again in the new domain.
import {
  cons,
  domid,
  shutdown,
  SHUTDOWN_poweroff,
  SHUTDOWN_crash,
  local_irq_enable,
  do_hypervisor_callback,
  xenbus_init,
  channel_open,
  channel_read,
  channel_write,
  channel_wait,
  cmdline_has,
  suspend,
  xenbus_poll_watch,
  xenbus_read,
  xenbus_reply,
  xenbus_watch,
  xenbus_write,
  str_eq,
} from "../lib/index";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

const LINE: u32 = 1024;
const line = memory.data(<i32>LINE);
const out = memory.data(<i32>(LINE + 16));

function write_all(p: usize, n: u32): void {
  let done: u32 = 0;
  while (done < n) {
    const w = channel_write(p + done, n - done);
    done += w;
    if (w == 0) channel_wait();
  }
}

/** Xen's suspend request: acknowledged, then suspend() (1: it runs on here, 0: in a new domain). */
function follow_control(): void {
  // Every event waiting is taken (each one read would leave the rest to
  // pile up and, past the queue's 16, be dropped); then the nodes are read.
  let events = 0;
  while (xenbus_poll_watch() != 0) events++;
  if (events == 0) return;
  if (xenbus_read("control/shutdown") < 0 || !str_eq(xenbus_reply(), "suspend")) return;
  xenbus_write("control/shutdown", "");
  const rc = suspend();
  cons.s("channel-echo: resumed (suspend returned ").i(rc).s(")").nl();
}

export function _start(): void {
  local_irq_enable(0);
  xenbus_init();
  const devid = channel_open("org.tsxen.echo");
  if (devid < 0) {
    cons.s("channel-echo: no channel org.tsxen.echo: ").i(devid).nl();
    shutdown(SHUTDOWN_crash);
    return;
  }
  cons.s("channel-echo: d").u(domid()).s(" has channel org.tsxen.echo as console ").i(devid).nl();
  const suspends = cmdline_has("suspend");
  if (suspends) {
    xenbus_watch("control/shutdown", "shutdown");
    xenbus_write("control/feature-suspend", "1");
  }
  let len: u32 = 0;
  while (true) {
    if (suspends) follow_control();
    const n = channel_read(line + len, 1);
    if (n == 0) {
      channel_wait();
      continue;
    }
    const c = load<u8>(line + len);
    if (c != 10) {
      if (len < LINE - 1) len++;
      continue;
    }
    if (len == 4 && load<u32>(line) == 0x74697571) break; // "quit"
    let o: u32 = 0;
    const prefix = "echo: ";
    for (let i = 0; i < prefix.length; i++) store<u8>(out + o++, <u8>prefix.charCodeAt(i));
    for (let i: u32 = 0; i < len; i++) {
      const ch = load<u8>(line + i);
      store<u8>(out + o++, ch >= 97 && ch <= 122 ? ch - 32 : ch);
    }
    store<u8>(out + o++, 10);
    write_all(out, o);
    len = 0;
  }
  cons.s("channel-echo: quit").nl();
  shutdown(SHUTDOWN_poweroff);
}
