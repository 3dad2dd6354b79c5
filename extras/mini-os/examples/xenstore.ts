// xenstore: a guest that talks to xenstored over its ring. It reads its name,
// writes data/greeting, bumps data/counter in a transaction (retrying on
// EAGAIN), and then does what every PV guest does: watches control/shutdown
// and powers off or reboots when the toolstack writes "poweroff" or "reboot"
// (saying so in control/feature-poweroff, -reboot and -suspend), suspends on
// "suspend" and carries on when resumed, in the same domain or a new one
// (its console and xenstore bound again, its watches set again), prints the letter
// `xl sysrq` writes to control/sysrq, and watches memory/target (xl mem-set),
// printing each new target and following it with its balloon driver. With
// `fifo` on its command line it uses the FIFO event channel ABI.
import {
  cmdline_has,
  cons,
  domid,
  shutdown,
  suspend,
  SHUTDOWN_poweroff,
  SHUTDOWN_reboot,
  SHUTDOWN_crash,
  XEN_EAGAIN,
  local_irq_enable,
  do_hypervisor_callback,
  init_events_fifo,
  xenbus_init,
  balloon_set_target,
  xenbus_read,
  xenbus_write,
  xenbus_write_raw,
  xenbus_directory,
  xenbus_watch,
  xenbus_wait_for_watch,
  xenbus_transaction_start,
  xenbus_transaction_end,
  xenbus_reply,
  xenbus_reply_len,
  str_eq,
} from "../lib/index";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

const num = memory.data(16);

function fail(what: string, rc: i32): void {
  cons.s("xenstore: ").s(what).s(" failed: ").i(rc).nl();
  shutdown(SHUTDOWN_crash);
}

/** Writes `n` in decimal at `num`; returns the length. */
function itoa(n: u32): i32 {
  let len = 0;
  let div: u32 = 1;
  while (n / div >= 10) div *= 10;
  for (; div > 0; div /= 10) store<u8>(num + len++, <u8>(48 + ((n / div) % 10)));
  return len;
}

function bump(): u32 {
  while (true) {
    const tx = xenbus_transaction_start();
    if (tx < 0) fail("transaction_start", tx);
    let n: u32 = 0;
    if (xenbus_read("data/counter", <u32>tx) == 0) {
      for (let i = 0; i < xenbus_reply_len(); i++) n = n * 10 + (load<u8>(xenbus_reply() + i) - 48);
    }
    n++;
    const rc = xenbus_write_raw("data/counter", num, itoa(n), <u32>tx);
    if (rc < 0) fail("write in a transaction", rc);
    const end = xenbus_transaction_end(<u32>tx, false);
    if (end == 0) return n;
    if (end != -XEN_EAGAIN) fail("transaction_end", end);
  }
}

export function _start(): void {
  // `fifo` on the command line: its events come through the FIFO ABI.
  if (cmdline_has("fifo")) {
    const rc = init_events_fifo();
    if (rc < 0) fail("init_events_fifo", rc);
  }
  local_irq_enable(0);
  xenbus_init();
  let rc = xenbus_read("name");
  if (rc < 0) fail("read name", rc);
  cons
    .s("xenstore: d")
    .u(domid())
    .s(" is named '")
    .raw(xenbus_reply(), xenbus_reply_len())
    .s("'")
    .nl();
  rc = xenbus_write("data/greeting", "hello from mini-os");
  if (rc < 0) fail("write data/greeting", rc);
  const n = bump();
  const entries = xenbus_directory("data");
  cons.s("xenstore: counter ").u(n).s(", data has ").i(entries).s(" entries").nl();
  rc = xenbus_watch("control/shutdown", "shutdown");
  if (rc < 0) fail("watch control/shutdown", rc);
  // As Linux says once its shutdown watch is set: these requests are
  // understood, "suspend" too (so xl save asks it to suspend itself, and
  // it reconnects in the new domain: mini-os's suspend()).
  xenbus_write("control/feature-poweroff", "1");
  xenbus_write("control/feature-reboot", "1");
  // `no-suspend` on the command line: a guest that does not say so (xl
  // save then pauses it where it is and restores it as it was).
  if (!cmdline_has("no-suspend")) xenbus_write("control/feature-suspend", "1");
  rc = xenbus_watch("control/sysrq", "sysrq");
  if (rc < 0) fail("watch control/sysrq", rc);
  // What a balloon driver watches: the toolstack's memory target (xl mem-set).
  rc = xenbus_watch("memory/target", "balloon");
  if (rc < 0) fail("watch memory/target", rc);
  let target: u32 = 0;
  while (true) {
    xenbus_wait_for_watch();
    if (xenbus_read("memory/target") == 0) {
      let t: u32 = 0;
      for (let i = 0; i < xenbus_reply_len(); i++) t = t * 10 + (load<u8>(xenbus_reply() + i) - 48);
      if (t != target) {
        target = t;
        cons.s("xenstore: memory/target is ").u(t).s(" KiB").nl();
        // The balloon follows it: pages go back to Xen or come from it.
        const pages = balloon_set_target(t);
        if (pages < 0) cons.s("balloon: Xen refused: ").i(pages).nl();
        else
          cons
            .s("balloon: ")
            .u(<u32>pages * 4)
            .s(" KiB")
            .nl();
      }
    }
    // xl sysrq: one letter, read and cleared as Linux's sysrq watch does.
    if (xenbus_read("control/sysrq") == 0 && xenbus_reply_len() > 0) {
      cons.s("xenstore: sysrq '").raw(xenbus_reply(), 1).s("'").nl();
      xenbus_write("control/sysrq", "");
    }
    if (xenbus_read("control/shutdown") < 0) continue;
    const v = xenbus_reply();
    if (str_eq(v, "suspend")) {
      // Xen's PV suspend: acknowledge by clearing the request, then suspend;
      // the hypercall returns when the toolstack resumes the domain.
      cons.s("xenstore: control/shutdown says 'suspend'").nl();
      xenbus_write("control/shutdown", "");
      const rc = suspend();
      cons.s("xenstore: resumed (suspend returned ").i(rc).s(")").nl();
      continue;
    }
    let reason: i32 = -1;
    if (str_eq(v, "poweroff")) reason = SHUTDOWN_poweroff;
    else if (str_eq(v, "reboot")) reason = SHUTDOWN_reboot;
    if (reason < 0) continue;
    cons.s("xenstore: control/shutdown says '").raw(v, xenbus_reply_len()).s("'").nl();
    // Acknowledge, as Linux does, by clearing the request.
    xenbus_write("control/shutdown", "");
    shutdown(<u32>reason);
  }
}
