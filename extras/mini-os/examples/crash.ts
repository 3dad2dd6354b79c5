// crash: says so, then executes `unreachable` (a wasm trap).
import { printk } from "../lib/index";

export function _start(): void {
  printk("crash: about to trap\n");
  unreachable();
}
