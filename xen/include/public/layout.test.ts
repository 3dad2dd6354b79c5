/**
 * Sizes and offsets of every guest-visible struct on wasm32, as documented in
 * docs/arch-wasm32.md. A change here is a change of the guest ABI.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Layout } from "./layout.js";
import {
  multicall_entry,
  shared_info,
  vcpu_guest_context,
  start_info,
  vcpu_info,
  vcpu_time_info,
} from "./arch-wasm32.js";
import { sched_poll, sched_remote_shutdown, sched_shutdown } from "./sched.js";
import { vcpu_runstate_info, vcpu_set_singleshot_timer } from "./vcpu.js";
import { xen_add_to_physmap, xen_mem_acquire_resource, xen_memory_reservation } from "./memory.js";
import { ioreq } from "./hvm/ioreq.js";
import {
  xen_dm_op,
  xen_dm_op_buf,
  xen_dm_op_create_ioreq_server,
  xen_dm_op_get_ioreq_server_info,
  xen_dm_op_ioreq_server_range,
  xen_dm_op_remote_shutdown,
  xen_dm_op_set_ioreq_server_state,
} from "./hvm/dm_op.js";
import { xen_hvm_param } from "./hvm/hvm_op.js";
import { xen_compile_info, xen_feature_info } from "./version.js";
import {
  grant_entry_v1,
  gnttab_copy,
  gnttab_copy_ptr,
  gnttab_dump_table,
  gnttab_get_version,
  gnttab_map_grant_ref,
  gnttab_query_size,
  gnttab_set_version,
  gnttab_setup_table,
  gnttab_unmap_grant_ref,
} from "./grant_table.js";
import * as EV from "./event_channel.js";
import { vchan_interface } from "./io/libxenvchan.js";
import { xencons_interface } from "./io/console.js";
import { xenstore_domain_interface, xsd_sockmsg } from "./io/xs_wire.js";
import { ringSize, sring_header } from "./io/ring.js";
import {
  xen_domctl,
  xen_domctl_getdomaininfo,
  xen_domctl_getvcpuinfo,
  xen_domctl_vcpucontext,
  xen_domctl_scheduler_op,
  xen_domctl_vcpuaffinity,
} from "./domctl.js";
import {
  blkif_request,
  blkif_request_discard,
  blkif_request_indirect,
  blkif_request_segment,
  blkif_response,
  blkifRingSize,
} from "./io/blkif.js";
import {
  NET_RX_RING_SIZE,
  NET_TX_RING_SIZE,
  netif_rx_request,
  netif_rx_response,
  netif_tx_request,
  netif_tx_response,
} from "./io/netif.js";
import {
  xen_sysctl,
  xen_sysctl_getdomaininfolist,
  xen_sysctl_physinfo,
  xen_sysctl_readconsole,
} from "./sysctl.js";

function offsets<F extends string>(l: Layout<F>): Record<string, number> {
  return Object.fromEntries(
    Object.entries<{ offset: number }>(l.fields).map(([k, f]) => [k, f.offset]),
  );
}

const table: Array<[Layout<string>, number, Record<string, number>]> = [
  [
    vcpu_time_info,
    32,
    {
      version: 0,
      tsc_timestamp: 8,
      system_time: 16,
      tsc_to_system_mul: 24,
      tsc_shift: 28,
      flags: 29,
    },
  ],
  [
    vcpu_info,
    48,
    { evtchn_upcall_pending: 0, evtchn_upcall_mask: 1, evtchn_pending_sel: 8, time: 16 },
  ],
  [
    shared_info,
    2576,
    {
      vcpu_info: 0,
      evtchn_pending: 1536,
      evtchn_mask: 2048,
      wc_version: 2560,
      wc_sec: 2564,
      wc_nsec: 2568,
      wc_sec_hi: 2572,
    },
  ],
  [
    start_info,
    1168,
    {
      magic: 0,
      nr_pages: 32,
      shared_info: 40,
      flags: 48,
      store_mfn: 56,
      store_evtchn: 64,
      console_mfn: 72,
      console_evtchn: 80,
      pt_base: 88,
      mod_start: 112,
      cmd_line: 128,
      first_p2m_pfn: 1152,
    },
  ],
  [multicall_entry, 64, { op: 0, result: 8, args: 16 }],
  [sched_shutdown, 4, { reason: 0 }],
  [sched_poll, 24, { ports: 0, nr_ports: 8, timeout: 16 }],
  [sched_remote_shutdown, 8, { domain_id: 0, reason: 4 }],
  [vcpu_runstate_info, 48, { state: 0, state_entry_time: 8, time: 16 }],
  [vcpu_set_singleshot_timer, 16, { timeout_abs_ns: 0, flags: 8 }],
  [
    xen_memory_reservation,
    32,
    { extent_start: 0, nr_extents: 8, extent_order: 16, mem_flags: 20, domid: 24 },
  ],
  [xen_add_to_physmap, 24, { domid: 0, size: 2, space: 4, idx: 8, gpfn: 16 }],
  [xen_compile_info, 144, { compiler: 0, compile_by: 64, compile_domain: 80, compile_date: 112 }],
  [xen_feature_info, 8, { submap_idx: 0, submap: 4 }],
  [grant_entry_v1, 8, { flags: 0, domid: 2, frame: 4 }],
  [
    gnttab_map_grant_ref,
    32,
    { host_addr: 0, flags: 8, ref: 12, dom: 16, status: 18, handle: 20, dev_bus_addr: 24 },
  ],
  [gnttab_unmap_grant_ref, 24, { host_addr: 0, dev_bus_addr: 8, handle: 16, status: 20 }],
  [gnttab_setup_table, 24, { dom: 0, nr_frames: 4, status: 8, frame_list: 16 }],
  [gnttab_dump_table, 4, { dom: 0, status: 2 }],
  [gnttab_copy_ptr, 16, { u: 0, domid: 8, offset: 10 }],
  [gnttab_copy, 40, { source: 0, dest: 16, len: 32, flags: 34, status: 36 }],
  [gnttab_query_size, 16, { dom: 0, nr_frames: 4, max_nr_frames: 8, status: 12 }],
  [gnttab_set_version, 4, { version: 0 }],
  [gnttab_get_version, 8, { dom: 0, pad: 2, version: 4 }],
  [EV.evtchn_alloc_unbound, 8, { dom: 0, remote_dom: 2, port: 4 }],
  [EV.evtchn_bind_interdomain, 12, { remote_dom: 0, remote_port: 4, local_port: 8 }],
  [EV.evtchn_bind_virq, 12, { virq: 0, vcpu: 4, port: 8 }],
  [EV.evtchn_bind_ipi, 8, { vcpu: 0, port: 4 }],
  [EV.evtchn_port_arg, 4, { port: 0 }],
  [EV.evtchn_status, 24, { dom: 0, port: 4, status: 8, vcpu: 12, u: 16, u_port: 20 }],
  [EV.evtchn_bind_vcpu, 8, { port: 0, vcpu: 4 }],
  [EV.evtchn_reset, 2, { dom: 0 }],
  [EV.evtchn_init_control, 24, { control_gfn: 0, offset: 8, vcpu: 12, link_bits: 16 }],
  [EV.evtchn_expand_array, 8, { array_gfn: 0 }],
  [EV.evtchn_set_priority, 8, { port: 0, priority: 4 }],
  [EV.evtchn_fifo_control_block, 72, { ready: 0, head: 8 }],
  [
    vchan_interface,
    24,
    {
      left_cons: 0,
      left_prod: 4,
      right_cons: 8,
      right_prod: 12,
      left_order: 16,
      right_order: 18,
      cli_live: 20,
      srv_live: 21,
      cli_notify: 22,
      srv_notify: 23,
    },
  ],
  [
    xencons_interface,
    3088,
    { in: 0, out: 1024, in_cons: 3072, in_prod: 3076, out_cons: 3080, out_prod: 3084 },
  ],
  [
    xenstore_domain_interface,
    2076,
    {
      req: 0,
      rsp: 1024,
      req_cons: 2048,
      req_prod: 2052,
      rsp_cons: 2056,
      rsp_prod: 2060,
      server_features: 2064,
      connection: 2068,
      error: 2072,
    },
  ],
  [xsd_sockmsg, 16, { type: 0, req_id: 4, tx_id: 8, len: 12 }],
  [
    ioreq,
    32,
    { addr: 0, data: 8, count: 16, size: 20, vp_eport: 24, _pad0: 28, flags: 30, type: 31 },
  ],
  [xen_dm_op_buf, 16, { h: 0, size: 8 }],
  [xen_dm_op, 32, { op: 0, pad: 4, u: 8 }],
  [xen_dm_op_create_ioreq_server, 6, { handle_bufioreq: 0, pad: 1, id: 4 }],
  [
    xen_dm_op_get_ioreq_server_info,
    24,
    { id: 0, flags: 2, bufioreq_port: 4, ioreq_gfn: 8, bufioreq_gfn: 16 },
  ],
  [xen_dm_op_ioreq_server_range, 24, { id: 0, pad: 2, type: 4, start: 8, end: 16 }],
  [xen_dm_op_set_ioreq_server_state, 4, { id: 0, enabled: 2, pad: 3 }],
  [xen_dm_op_remote_shutdown, 4, { reason: 0 }],
  [xen_hvm_param, 16, { domid: 0, pad: 2, index: 4, value: 8 }],
  [
    xen_mem_acquire_resource,
    32,
    { domid: 0, type: 2, id: 4, nr_frames: 8, pad: 12, frame: 16, frame_list: 24 },
  ],
  [xen_domctl, 144, { cmd: 0, interface_version: 4, domain: 8, u: 16 }],
  [
    xen_domctl_getdomaininfo,
    112,
    {
      domain: 0,
      flags: 4,
      tot_pages: 8,
      max_pages: 16,
      shared_info_frame: 48,
      cpu_time: 56,
      nr_online_vcpus: 64,
      max_vcpu_id: 68,
      ssidref: 72,
      handle: 76,
      cpupool: 92,
      gpaddr_bits: 96,
      arch_config: 104,
    },
  ],
  [
    xen_domctl_getvcpuinfo,
    24,
    { vcpu: 0, online: 4, blocked: 5, running: 6, cpu_time: 8, cpu: 16 },
  ],
  [xen_domctl_vcpuaffinity, 40, { vcpu: 0, flags: 4, cpumap_hard: 8, cpumap_soft: 24 }],
  [xen_domctl_vcpucontext, 16, { vcpu: 0, ctxt: 8 }],
  [
    vcpu_guest_context,
    80,
    {
      flags: 0,
      entry: 8,
      arg: 12,
      runstate: 16,
      suspended: 20,
      save_area: 24,
      cont_op: 32,
      cont_args: 40,
    },
  ],
  [xen_domctl_scheduler_op, 24, { sched_id: 0, cmd: 4, u: 8 }],
  [xen_sysctl, 136, { cmd: 0, interface_version: 4, u: 8 }],
  [xen_sysctl_readconsole, 24, { clear: 0, incremental: 1, index: 4, buffer: 8, count: 16 }],
  [
    xen_sysctl_physinfo,
    112,
    { nr_cpus: 8, cpu_khz: 24, total_pages: 40, free_pages: 48, max_mfn: 72, hw_cap: 80 },
  ],
  [
    xen_sysctl_getdomaininfolist,
    24,
    { first_domain: 0, max_domains: 4, buffer: 8, num_domains: 16 },
  ],
  [blkif_request_segment, 8, { gref: 0, first_sect: 4, last_sect: 5 }],
  [
    blkif_request,
    112,
    { operation: 0, nr_segments: 1, handle: 2, id: 8, sector_number: 16, seg: 24 },
  ],
  [blkif_request_discard, 32, { flag: 1, id: 8, sector_number: 16, nr_sectors: 24 }],
  [
    blkif_request_indirect,
    64,
    { indirect_op: 1, nr_segments: 2, id: 8, handle: 24, indirect_grefs: 28 },
  ],
  [blkif_response, 16, { id: 0, operation: 8, status: 10 }],
  [netif_tx_request, 12, { gref: 0, offset: 4, flags: 6, id: 8, size: 10 }],
  [netif_tx_response, 4, { id: 0, status: 2 }],
  [netif_rx_request, 8, { id: 0, gref: 4 }],
  [netif_rx_response, 8, { id: 0, offset: 2, flags: 4, status: 6 }],
  [sring_header, 64, { req_prod: 0, req_event: 4, rsp_prod: 8, rsp_event: 12, pvt: 16, __pad: 20 }],
];

for (const [layout, size, fields] of table) {
  test(`${layout.name} is ${size} bytes with Xen's field order`, () => {
    assert.equal(layout.size, size);
    const got = offsets(layout);
    for (const [k, off] of Object.entries(fields)) assert.equal(got[k], off, `${layout.name}.${k}`);
  });
}

test("shared_info fits the page it lives in", () => {
  assert.ok(shared_info.size <= 4096 && start_info.size <= 4096);
});

test("ring sizes round down to a power of two as __CONST_RING_SIZE does", () => {
  // blkif entries are 112 bytes: (4096 - 64) / 112 = 36 → 32 entries.
  assert.equal(ringSize(4096, 112), 32);
  assert.equal(ringSize(4096, 8), 256);
});

test("a one-page blkif ring has 32 entries", () => {
  assert.equal(blkifRingSize(1), 32);
  assert.equal(blkifRingSize(4), 128);
});

test("netif rings hold 256 entries in a page", () => {
  assert.equal(NET_TX_RING_SIZE, 256);
  assert.equal(NET_RX_RING_SIZE, 256);
});
