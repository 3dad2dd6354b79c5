/**
 * HVM operations and parameters, following Xen's
 * `xen/include/public/hvm/hvm_op.h` and `hvm/params.h`: `hvm_op`'s
 * set_param / get_param carry the values an HVM guest or its toolstack and
 * device model need (the xenstore and console pages and ports, the ioreq
 * server pages).
 */
import { struct } from "../layout.js";

export const HVMOP_set_param = 0;
export const HVMOP_get_param = 1;

/** struct xen_hvm_param */
export const xen_hvm_param = struct("xen_hvm_param", [
  ["domid", 2],
  ["pad", 2],
  ["index", 4],
  ["value", 8],
]);

export const HVM_PARAM_CALLBACK_IRQ = 0;
export const HVM_PARAM_STORE_PFN = 1;
export const HVM_PARAM_STORE_EVTCHN = 2;
export const HVM_PARAM_PAE_ENABLED = 4;
export const HVM_PARAM_IOREQ_PFN = 5;
export const HVM_PARAM_BUFIOREQ_PFN = 6;
export const HVM_PARAM_TIMER_MODE = 10;
export const HVM_PARAM_CONSOLE_PFN = 17;
export const HVM_PARAM_CONSOLE_EVTCHN = 18;
export const HVM_PARAM_BUFIOREQ_EVTCHN = 26;
export const HVM_PARAM_IOREQ_SERVER_PFN = 32;
export const HVM_PARAM_NR_IOREQ_SERVER_PAGES = 33;
export const HVM_NR_PARAMS = 39;
