// hello: prints a greeting with its domid and command line, then powers off.
import {
  cons,
  domid,
  cmdline_ptr,
  cmdline_len,
  shutdown,
  SHUTDOWN_poweroff,
  SHUTDOWN_crash,
  START_INFO_ADDR,
} from "../lib/index";

export function _start(start_info: usize): void {
  // start_info is where the hypervisor says it is: check it against the layout.
  if (start_info != START_INFO_ADDR) shutdown(SHUTDOWN_crash);
  cons
    .s("Hello from tsxen! This is domain ")
    .u(domid())
    .s(", command line: '")
    .raw(cmdline_ptr(), cmdline_len())
    .s("'")
    .nl();
  shutdown(SHUTDOWN_poweroff);
}
