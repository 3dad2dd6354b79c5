/**
 * Device states of the xenbus handshake between a frontend and a backend,
 * following `xen/include/public/io/xenbus.h` (and xen-doc
 * `misc/pv-drivers-lifecycle`): each side writes its `state` node.
 */
export const XenbusStateUnknown = 0;
export const XenbusStateInitialising = 1;
export const XenbusStateInitWait = 2;
export const XenbusStateInitialised = 3;
export const XenbusStateConnected = 4;
export const XenbusStateClosing = 5;
export const XenbusStateClosed = 6;
export const XenbusStateReconfiguring = 7;
export const XenbusStateReconfigured = 8;

export const XENBUS_STATE_NAMES = [
  "Unknown",
  "Initialising",
  "InitWait",
  "Initialised",
  "Connected",
  "Closing",
  "Closed",
  "Reconfiguring",
  "Reconfigured",
] as const;
