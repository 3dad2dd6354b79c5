// echo: a console you can type into. It echoes what it reads from the PV
// console's input ring (a raw terminal sends Enter as '\r'), and at the end
// of each line answers "echo: <line>". "quit" powers it off.
import {
  cons,
  domid,
  console_port,
  console_read,
  console_write,
  block,
  shutdown,
  SHUTDOWN_poweroff,
  do_hypervisor_callback,
  local_irq_enable,
} from "../lib/index";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

const LINE_MAX: i32 = 256;
const line = memory.data(LINE_MAX);
const inbuf = memory.data(64);
const nl = memory.data(1);

function is_quit(n: i32): bool {
  return (
    n == 4 &&
    load<u8>(line) == 113 &&
    load<u8>(line + 1) == 117 &&
    load<u8>(line + 2) == 105 &&
    load<u8>(line + 3) == 116
  );
}

export function _start(): void {
  local_irq_enable(0);
  if (console_port() == 0) {
    cons.s("echo: no console ring (start me with xl create)").nl();
    shutdown(SHUTDOWN_poweroff);
  }
  store<u8>(nl, 10);
  cons.s("echo d").u(domid()).s(": type a line (quit to stop)").nl();
  let len: i32 = 0;
  for (;;) {
    const n = console_read(inbuf, 64);
    if (n == 0) {
      block();
      continue;
    }
    for (let i = 0; i < n; i++) {
      const c = load<u8>(inbuf + i);
      if (c == 13 || c == 10) {
        console_write(nl, 1);
        if (is_quit(len)) {
          cons.s("echo: bye").nl();
          shutdown(SHUTDOWN_poweroff);
        }
        cons.s("echo: ").raw(line, len).nl();
        len = 0;
      } else {
        console_write(inbuf + i, 1);
        if (len < LINE_MAX) {
          store<u8>(line + len, c);
          len++;
        }
      }
    }
  }
}
