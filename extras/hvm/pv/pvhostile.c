/*
 * pvhostile: an HVM program with PV drivers that attacks the hypervisor
 * through its hypercalls. The isolation tests run it beside other domains
 * and check that they carry on, and that each attack gets Xen's answer.
 *
 *   pvhostile wild     hypercalls with wild pointers, forbidden params and
 *                      domains, frames outside its memory; prints each result
 *   pvhostile flood N  N xen_version hypercalls as fast as it can
 *   pvhostile batch N  grant copies of N x 4 KiB between its own frames in one
 *                      GNTTABOP_copy, then checks every byte moved
 *   pvhostile block    SCHEDOP_block with no event ever coming
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xenpv.h"

#define WILD ((void *)0xfffffff0u)

static void show(const char *what, int rc) { printf("wild: %s = %d\n", what, rc); }

static void wild(void) {
    show("xen_version(extraversion, wild)", HYPERVISOR_xen_version(XENVER_extraversion, WILD));
    show("memory_op(add_to_physmap, wild)", HYPERVISOR_memory_op(XENMEM_add_to_physmap, WILD));
    struct xen_add_to_physmap far = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0, .gpfn = 0xffff0};
    show("add_to_physmap(shared_info, past its memory)", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &far));
    struct xen_add_to_physmap other = {
        .domid = 0, .space = XENMAPSPACE_shared_info, .idx = 0, .gpfn = 80};
    show("add_to_physmap(shared_info, of dom0)", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &other));
    xen_pfn_t pfn = WASM32_PFN_SHARED_INFO;
    struct xen_memory_reservation give = {.nr_extents = 1, .extent_order = 0, .domid = DOMID_SELF};
    set_xen_guest_handle(give.extent_start, &pfn);
    show("decrease_reservation(shared_info's frame)", HYPERVISOR_memory_op(XENMEM_decrease_reservation, &give));
    struct gnttab_setup_table s = {.dom = DOMID_SELF, .nr_frames = 1};
    set_xen_guest_handle(s.frame_list, WILD);
    show("grant_table_op(setup_table, wild frame_list)", HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &s, 1));
    show("grant_table_op(copy, wild, 1000000)", HYPERVISOR_grant_table_op(GNTTABOP_copy, WILD, 1000000));
    struct xen_hvm_param p = {.domid = DOMID_SELF, .index = HVM_PARAM_STORE_PFN, .value = 200};
    show("hvm_op(set_param STORE_PFN)", HYPERVISOR_hvm_op(HVMOP_set_param, &p));
    p.domid = 0;
    show("hvm_op(get_param of dom0)", HYPERVISOR_hvm_op(HVMOP_get_param, &p));
    p.domid = DOMID_SELF;
    p.index = 1000;
    show("hvm_op(get_param 1000)", HYPERVISOR_hvm_op(HVMOP_get_param, &p));
    struct sched_remote_shutdown r = {.domain_id = 0, .reason = SHUTDOWN_poweroff};
    show("sched_op(remote_shutdown dom0)", HYPERVISOR_sched_op(SCHEDOP_remote_shutdown, &r));
    show("domctl(wild)", _hypercall(__HYPERVISOR_domctl, (int)WILD, 0, 0, 0, 0));
    show("hypercall 40", _hypercall(40, 0, 0, 0, 0, 0));
    show("hypercall -1", _hypercall(-1, 0, 0, 0, 0, 0));
    struct evtchn_bind_interdomain b = {.remote_dom = 0, .remote_port = 1};
    show("event_channel_op(bind dom0's port 1)", HYPERVISOR_event_channel_op(EVTCHNOP_bind_interdomain, &b));
    struct evtchn_send snd = {.port = 100000};
    show("event_channel_op(send 100000)", HYPERVISOR_event_channel_op(EVTCHNOP_send, &snd));
    evtchn_port_t ports[200];
    struct sched_poll sp = {.nr_ports = 200, .timeout = 0};
    set_xen_guest_handle(sp.ports, ports);
    show("sched_op(poll 200 ports)", HYPERVISOR_sched_op(SCHEDOP_poll, &sp));
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void flood(long n) {
    double t0 = now_s();
    for (long i = 0; i < n; i++) HYPERVISOR_xen_version(XENVER_version, NULL);
    double dt = now_s() - t0;
    printf("flood: %ld hypercalls in %.3f s (%.1f us each)\n", n, dt, dt * 1e6 / n);
}

static void batch(long n) {
    /* n pages to copy from and n to copy into, all of its own memory. */
    uint8_t *from = aligned_alloc(4096, n * 4096);
    uint8_t *to = aligned_alloc(4096, n * 4096);
    gnttab_copy_t *ops = calloc(n, sizeof *ops);
    if (!from || !to || !ops) {
        printf("batch: out of memory\n");
        return;
    }
    for (long i = 0; i < n * 4096; i++) from[i] = (uint8_t)(i * 7 + i / 4096);
    memset(to, 0, n * 4096);
    for (long i = 0; i < n; i++) {
        ops[i].source.u.gmfn = ((uintptr_t)from >> 12) + i;
        ops[i].source.domid = DOMID_SELF;
        ops[i].dest.u.gmfn = ((uintptr_t)to >> 12) + i;
        ops[i].dest.domid = DOMID_SELF;
        ops[i].len = 4096;
    }
    double t0 = now_s();
    int rc = HYPERVISOR_grant_table_op(GNTTABOP_copy, ops, n);
    double dt = now_s() - t0;
    long bad = 0;
    for (long i = 0; i < n; i++) if (ops[i].status != GNTST_okay) bad++;
    int same = memcmp(from, to, n * 4096) == 0;
    printf("batch: %ld copies rc %d, %ld failed, data %s, %.3f s\n", n, rc, bad, same ? "equal" : "DIFFERENT", dt);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    long n = argc > 2 ? atol(argv[2]) : 0;
    int rc = xenpv_init();
    if (rc < 0) {
        printf("pvhostile: xenpv_init failed: %d\n", rc);
        return 1;
    }
    if (strcmp(mode, "wild") == 0) wild();
    else if (strcmp(mode, "flood") == 0) flood(n);
    else if (strcmp(mode, "batch") == 0) batch(n);
    else if (strcmp(mode, "block") == 0) {
        /* Forget every event so far: SCHEDOP_block returns at once while one is pending. */
        vcpu_info_t *v = &xenpv_shared_info->vcpu_info[0];
        for (unsigned i = 0; i < sizeof xenpv_shared_info->evtchn_pending / sizeof(xen_ulong_t); i++)
            xenpv_shared_info->evtchn_pending[i] = 0;
        v->evtchn_pending_sel = 0;
        v->evtchn_upcall_pending = 0;
        printf("block: blocking with no event to come\n");
        fflush(stdout);
        HYPERVISOR_sched_op(SCHEDOP_block, NULL);
        printf("block: woke up\n");
    } else {
        fprintf(stderr, "usage: pvhostile wild|flood N|batch N|block\n");
        return 2;
    }
    return 0;
}
