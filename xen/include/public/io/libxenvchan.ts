/**
 * The vchan shared page, following `xen/include/public/io/libxenvchan.h`:
 * two byte rings (left: client writes, server reads; right: server writes,
 * client reads), each with free-running cons/prod indices, ring orders, the
 * live flags and notify bits, then the grant list of multi-page rings.
 */
import { struct } from "../layout.js";

export const VCHAN_NOTIFY_WRITE = 0x1;
export const VCHAN_NOTIFY_READ = 0x2;

/** struct vchan_interface (without the flexible grants[] at its end). */
export const vchan_interface = struct("vchan_interface", [
  ["left_cons", 4],
  ["left_prod", 4],
  ["right_cons", 4],
  ["right_prod", 4],
  ["left_order", 2],
  ["right_order", 2],
  ["cli_live", 1],
  ["srv_live", 1],
  ["cli_notify", 1],
  ["srv_notify", 1],
]);
