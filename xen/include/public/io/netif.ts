/**
 * The network interface, following `xen/include/public/io/netif.h`: the
 * transmit ring (guest → backend: a packet is one request per fragment,
 * chained with NETTXF_more_data, the first carrying the packet's whole size)
 * and the receive ring (the guest posts pages; the backend copies packets
 * into them and answers with offset, flags and the length as status).
 */
import { struct } from "../layout.js";
import { ringSize } from "./ring.js";

export const _NETTXF_csum_blank = 0;
export const NETTXF_csum_blank = 1 << 0;
export const _NETTXF_data_validated = 1;
export const NETTXF_data_validated = 1 << 1;
export const _NETTXF_more_data = 2;
export const NETTXF_more_data = 1 << 2;
export const _NETTXF_extra_info = 3;
export const NETTXF_extra_info = 1 << 3;

export const _NETRXF_data_validated = 0;
export const NETRXF_data_validated = 1 << 0;
export const _NETRXF_csum_blank = 1;
export const NETRXF_csum_blank = 1 << 1;
export const _NETRXF_more_data = 2;
export const NETRXF_more_data = 1 << 2;
export const _NETRXF_extra_info = 3;
export const NETRXF_extra_info = 1 << 3;
export const _NETRXF_gso_prefix = 4;
export const NETRXF_gso_prefix = 1 << 4;

export const NETIF_RSP_DROPPED = -2;
export const NETIF_RSP_ERROR = -1;
export const NETIF_RSP_OKAY = 0;
export const NETIF_RSP_NULL = 1;

/** Slots a backend must accept for one packet. */
export const XEN_NETIF_NR_SLOTS_MIN = 18;

/** struct netif_tx_request */
export const netif_tx_request = struct("netif_tx_request", [
  ["gref", 4],
  ["offset", 2],
  ["flags", 2],
  ["id", 2],
  ["size", 2],
]);
/** struct netif_tx_response */
export const netif_tx_response = struct("netif_tx_response", [
  ["id", 2],
  ["status", 2],
]);
/** struct netif_rx_request */
export const netif_rx_request = struct("netif_rx_request", [
  ["id", 2],
  ["pad", 2],
  ["gref", 4],
]);
/** struct netif_rx_response */
export const netif_rx_response = struct("netif_rx_response", [
  ["id", 2],
  ["offset", 2],
  ["flags", 2],
  ["status", 2],
]);

/** Ring entries: 12 bytes on the tx ring, 8 on the rx ring; 256 of each in a page. */
export const NETIF_TX_ENTRY = Math.max(netif_tx_request.size, netif_tx_response.size);
export const NETIF_RX_ENTRY = Math.max(netif_rx_request.size, netif_rx_response.size);
export const NET_TX_RING_SIZE = ringSize(4096, NETIF_TX_ENTRY);
export const NET_RX_RING_SIZE = ringSize(4096, NETIF_RX_ENTRY);
