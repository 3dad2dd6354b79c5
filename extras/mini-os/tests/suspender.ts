// suspender: a PV guest with a disk that handles Xen's suspend request, for
// the save and restore tests. It says so (control/feature-suspend), then
// round after round writes one of 64 sectors of xvda with a pattern of the
// round and reads it back. When control/shutdown says "suspend" it clears
// the request and suspends; when the call returns (1: the same domain, 0: a
// new one, whose blkfront mini-os has connected again) it reads back every
// sector it wrote and says whether all hold what it wrote, then goes on.
import {
  cons,
  shutdown,
  suspend,
  msleep,
  SHUTDOWN_poweroff,
  SHUTDOWN_crash,
  local_irq_enable,
  do_hypervisor_callback,
  xenbus_init,
  xenbus_read,
  xenbus_reply,
  xenbus_watch,
  xenbus_write,
  xenbus_poll_watch,
  str_eq,
} from "../lib/index";
import { blkfront_init, blkfront_read, blkfront_write } from "../lib/blkfront";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

const SLOTS: u32 = 64;
const buf = memory.data(4096, 4096);
/** The round last written to each slot (0: never). */
const written = memory.data(<i32>(SLOTS * 4));

function fail(what: string, rc: i32): void {
  cons.s("suspender: ").s(what).s(" failed: ").i(rc).nl();
  shutdown(SHUTDOWN_crash);
}

function fill(round: u32, slot: u32): void {
  for (let i: u32 = 0; i < 512; i += 4) store<u32>(buf + i, round * 2654435761 + slot + i);
}

/** Whether sector `slot` holds what round `round` wrote there. */
function holds(round: u32, slot: u32): bool {
  const rc = blkfront_read(<u64>slot, buf, 512);
  if (rc < 0) fail("a read", rc);
  for (let i: u32 = 0; i < 512; i += 4)
    if (load<u32>(buf + i) != round * 2654435761 + slot + i) return false;
  return true;
}

function verify_all(): u32 {
  let n: u32 = 0;
  for (let s: u32 = 0; s < SLOTS; s++) {
    const r = load<u32>(written + s * 4);
    if (r == 0) continue;
    if (!holds(r, s)) {
      cons.s("suspender: sector ").u(s).s(" does not hold round ").u(r).nl();
      shutdown(SHUTDOWN_crash);
    }
    n++;
  }
  return n;
}

export function _start(): void {
  local_irq_enable(0);
  xenbus_init();
  const w = xenbus_watch("control/shutdown", "shutdown");
  if (w < 0) fail("watching control/shutdown", w);
  xenbus_write("control/feature-suspend", "1");
  const rc = blkfront_init(51712);
  if (rc < 0) fail("connecting xvda", rc);
  cons.s("suspender: xvda connected").nl();
  for (let round: u32 = 1; ; round++) {
    const slot = round % SLOTS;
    fill(round, slot);
    const wr = blkfront_write(<u64>slot, buf, 512);
    if (wr < 0) fail("a write", wr);
    store<u32>(written + slot * 4, round);
    if (!holds(round, slot)) fail("reading back", -1);
    if (round % 100 == 0) cons.s("suspender: round ").u(round).nl();
    if (xenbus_poll_watch() != 0 && xenbus_read("control/shutdown") == 0) {
      const v = xenbus_reply();
      if (str_eq(v, "poweroff")) shutdown(SHUTDOWN_poweroff);
      if (str_eq(v, "suspend")) {
        xenbus_write("control/shutdown", "");
        const r = suspend();
        cons.s("suspender: resumed (suspend returned ").i(r).s(")").nl();
        cons.s("suspender: ").u(verify_all()).s(" sectors hold what was written").nl();
      }
    }
    msleep(2);
  }
}
