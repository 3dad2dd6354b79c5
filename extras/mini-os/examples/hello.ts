// hello: prints a greeting with its domid and command line, then powers off.
import { cons, domid, cmdline_ptr, cmdline_len, shutdown, SHUTDOWN_poweroff } from "../lib/index";

export function _start(): void {
  cons
    .s("Hello from tsxen! This is domain ")
    .u(domid())
    .s(", command line: '")
    .raw(cmdline_ptr(), cmdline_len())
    .s("'")
    .nl();
  shutdown(SHUTDOWN_poweroff);
}
