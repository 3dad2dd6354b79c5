/*
 * xenpv.c: the PV drivers of xenpv.h (hypercalls, events, grants, xenstore).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xenpv.h"

domid_t xenpv_domid;
shared_info_t *xenpv_shared_info;

static struct xenstore_domain_interface *xs_ring;
static evtchn_port_t xs_evtchn;
static uint32_t xs_req_id;

#define FRAME_ADDR(pfn) ((void *)(uintptr_t)((pfn) << 12))

int xenpv_get_param(uint32_t index, uint64_t *value) {
    struct xen_hvm_param p = {.domid = DOMID_SELF, .index = index};
    int rc = HYPERVISOR_hvm_op(HVMOP_get_param, &p);
    if (rc == 0) *value = p.value;
    return rc;
}

int xenpv_set_param(uint32_t index, uint64_t value) {
    struct xen_hvm_param p = {.domid = DOMID_SELF, .index = index, .value = value};
    return HYPERVISOR_hvm_op(HVMOP_set_param, &p);
}

int xenpv_init(void) {
    /* Where Linux's HVM guests put shared_info is their choice; ours is the usual frame. */
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF,
        .space = XENMAPSPACE_shared_info,
        .idx = 0,
        .gpfn = WASM32_PFN_SHARED_INFO,
    };
    int rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp);
    if (rc < 0) return rc;
    xenpv_shared_info = FRAME_ADDR(WASM32_PFN_SHARED_INFO);
    uint64_t pfn, port;
    if ((rc = xenpv_get_param(HVM_PARAM_STORE_PFN, &pfn)) < 0) return rc;
    if ((rc = xenpv_get_param(HVM_PARAM_STORE_EVTCHN, &port)) < 0) return rc;
    if (pfn == 0 || pfn >= WASM32_IMAGE_BASE >> 12) return -EINVAL;
    xs_ring = FRAME_ADDR(pfn);
    xs_evtchn = (evtchn_port_t)port;
    char buf[16];
    if ((rc = xs_read("domid", buf, sizeof buf)) < 0) return rc;
    xenpv_domid = (domid_t)atoi(buf);
    return 0;
}

/* --- event channels ------------------------------------------------------ */

int xenpv_evtchn_alloc_unbound(domid_t remote, evtchn_port_t *port) {
    struct evtchn_alloc_unbound op = {.dom = DOMID_SELF, .remote_dom = remote};
    int rc = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &op);
    if (rc == 0) *port = op.port;
    return rc;
}

int xenpv_evtchn_send(evtchn_port_t port) {
    struct evtchn_send op = {.port = port};
    return HYPERVISOR_event_channel_op(EVTCHNOP_send, &op);
}

int xenpv_evtchn_close(evtchn_port_t port) {
    struct evtchn_close op = {.port = port};
    return HYPERVISOR_event_channel_op(EVTCHNOP_close, &op);
}

int xenpv_evtchn_test_and_clear(evtchn_port_t port) {
    xen_ulong_t bit = (xen_ulong_t)1 << (port % 64);
    xen_ulong_t *word = &xenpv_shared_info->evtchn_pending[port / 64];
    return (__atomic_fetch_and(word, ~bit, __ATOMIC_ACQ_REL) & bit) != 0;
}

int xenpv_evtchn_poll(evtchn_port_t *ports, unsigned n, uint64_t timeout_ns) {
    struct sched_poll p = {.nr_ports = n, .timeout = timeout_ns};
    set_xen_guest_handle(p.ports, ports);
    return HYPERVISOR_sched_op(SCHEDOP_poll, &p);
}

/* Waits for `port`, then clears it: the caller looks again at what it waits for. */
static void wait_port(evtchn_port_t port) {
    if (xenpv_evtchn_test_and_clear(port)) return;
    xenpv_evtchn_poll(&port, 1, 0);
    xenpv_evtchn_test_and_clear(port);
}

/* --- grant table --------------------------------------------------------- */

static grant_entry_v1_t *gnttab;
static grant_ref_t next_ref = GNTTAB_NR_RESERVED_ENTRIES;

int xenpv_grant(domid_t domid, xen_pfn_t frame, int readonly) {
    if (!gnttab) {
        xen_pfn_t frames[1];
        struct gnttab_setup_table s = {.dom = DOMID_SELF, .nr_frames = 1};
        set_xen_guest_handle(s.frame_list, frames);
        int rc = HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &s, 1);
        if (rc < 0) return rc;
        if (s.status != GNTST_okay) return -EINVAL;
        gnttab = FRAME_ADDR(frames[0]);
    }
    if (next_ref >= 4096 / sizeof(grant_entry_v1_t)) return -ENOSPC;
    grant_ref_t ref = next_ref++;
    gnttab[ref].frame = (uint32_t)frame;
    gnttab[ref].domid = domid;
    __atomic_store_n(&gnttab[ref].flags, GTF_permit_access | (readonly ? GTF_readonly : 0),
                     __ATOMIC_RELEASE);
    return (int)ref;
}

void xenpv_grant_end(grant_ref_t ref) { __atomic_store_n(&gnttab[ref].flags, 0, __ATOMIC_RELEASE); }

/* --- xenstore over the ring ---------------------------------------------- */

evtchn_port_t xs_port(void) { return xs_evtchn; }

static void ring_write(const void *data, unsigned len) {
    const char *p = data;
    while (len > 0) {
        XENSTORE_RING_IDX cons = __atomic_load_n(&xs_ring->req_cons, __ATOMIC_ACQUIRE);
        XENSTORE_RING_IDX prod = xs_ring->req_prod;
        unsigned used = prod - cons;
        if (used >= XENSTORE_RING_SIZE) {
            xenpv_evtchn_send(xs_evtchn);
            wait_port(xs_evtchn);
            continue;
        }
        unsigned off = MASK_XENSTORE_IDX(prod);
        unsigned n = XENSTORE_RING_SIZE - used;
        if (n > XENSTORE_RING_SIZE - off) n = XENSTORE_RING_SIZE - off;
        if (n > len) n = len;
        memcpy(xs_ring->req + off, p, n);
        __atomic_store_n(&xs_ring->req_prod, prod + n, __ATOMIC_RELEASE);
        p += n;
        len -= n;
    }
    xenpv_evtchn_send(xs_evtchn);
}

static unsigned ring_available(void) {
    return __atomic_load_n(&xs_ring->rsp_prod, __ATOMIC_ACQUIRE) - xs_ring->rsp_cons;
}

static void ring_read(void *data, unsigned len) {
    char *p = data;
    while (len > 0) {
        unsigned avail = ring_available();
        if (avail == 0) {
            wait_port(xs_evtchn);
            continue;
        }
        XENSTORE_RING_IDX cons = xs_ring->rsp_cons;
        unsigned off = MASK_XENSTORE_IDX(cons);
        unsigned n = avail;
        if (n > XENSTORE_RING_SIZE - off) n = XENSTORE_RING_SIZE - off;
        if (n > len) n = len;
        memcpy(p, xs_ring->rsp + off, n);
        __atomic_store_n(&xs_ring->rsp_cons, cons + n, __ATOMIC_RELEASE);
        /* There is room in the ring again: xenstored may be waiting for it. */
        xenpv_evtchn_send(xs_evtchn);
        p += n;
        len -= n;
    }
}

#define MAX_EVENTS 16
static struct {
    char path[256];
    char token[64];
} events[MAX_EVENTS];
static unsigned events_head, events_count;

static char payload[XENSTORE_PAYLOAD_MAX + 1];

/* Reads one message; a watch event is queued and 0 returned, otherwise 1. */
static int read_message(struct xsd_sockmsg *hdr) {
    ring_read(hdr, sizeof *hdr);
    if (hdr->len > XENSTORE_PAYLOAD_MAX) hdr->len = XENSTORE_PAYLOAD_MAX; /* xenstored never sends more */
    ring_read(payload, hdr->len);
    payload[hdr->len] = 0;
    if (hdr->type != XS_WATCH_EVENT) return 1;
    if (events_count < MAX_EVENTS) {
        unsigned i = (events_head + events_count++) % MAX_EVENTS;
        const char *path = payload;
        size_t plen = strnlen(path, hdr->len);
        const char *token = plen < hdr->len ? payload + plen + 1 : "";
        strncpy(events[i].path, path, sizeof events[i].path - 1);
        events[i].path[sizeof events[i].path - 1] = 0;
        strncpy(events[i].token, token, sizeof events[i].token - 1);
        events[i].token[sizeof events[i].token - 1] = 0;
    }
    return 0;
}

void xs_poll(void) {
    for (;;) {
        struct xsd_sockmsg hdr;
        if (ring_available() < sizeof hdr) return;
        XENSTORE_RING_IDX cons = xs_ring->rsp_cons;
        for (unsigned i = 0; i < sizeof hdr; i++)
            ((char *)&hdr)[i] = xs_ring->rsp[MASK_XENSTORE_IDX(cons + i)];
        if (ring_available() < sizeof hdr + hdr.len) return;
        read_message(&hdr);
    }
}

int xs_watch_event(char *path, unsigned path_cap, char *token, unsigned token_cap) {
    xs_poll();
    if (events_count == 0) return 0;
    unsigned i = events_head;
    events_head = (events_head + 1) % MAX_EVENTS;
    events_count--;
    strncpy(path, events[i].path, path_cap - 1);
    path[path_cap - 1] = 0;
    strncpy(token, events[i].token, token_cap - 1);
    token[token_cap - 1] = 0;
    return 1;
}

/* xenstored's error name as an errno value (io/xs_wire.h's table). */
static int xs_errno(const char *name) {
    for (unsigned i = 0; i < sizeof xsd_errors / sizeof xsd_errors[0]; i++)
        if (strcmp(xsd_errors[i].errstring, name) == 0) return xsd_errors[i].errnum;
    return EIO;
}

/* Sends a request made of `n` parts and reads its reply into `reply` (NUL-terminated). */
static int xs_request(uint32_t type, const char *const *parts, const unsigned *lens, unsigned n,
                      char *reply, unsigned cap) {
    struct xsd_sockmsg hdr = {.type = type, .req_id = ++xs_req_id, .tx_id = 0, .len = 0};
    for (unsigned i = 0; i < n; i++) hdr.len += lens[i];
    if (hdr.len > XENSTORE_PAYLOAD_MAX) return -E2BIG;
    ring_write(&hdr, sizeof hdr);
    for (unsigned i = 0; i < n; i++) ring_write(parts[i], lens[i]);
    struct xsd_sockmsg r;
    while (!read_message(&r) || r.req_id != hdr.req_id) {
    }
    if (r.type == XS_ERROR) return -xs_errno(payload);
    if (reply && cap > 0) {
        unsigned k = r.len < cap - 1 ? r.len : cap - 1;
        memcpy(reply, payload, k);
        reply[k] = 0;
    }
    return 0;
}

int xs_read(const char *path, char *buf, unsigned cap) {
    const char *parts[] = {path};
    unsigned lens[] = {strlen(path) + 1};
    return xs_request(XS_READ, parts, lens, 1, buf, cap);
}

int xs_write(const char *path, const char *value) {
    const char *parts[] = {path, value};
    unsigned lens[] = {strlen(path) + 1, strlen(value)};
    return xs_request(XS_WRITE, parts, lens, 2, NULL, 0);
}

int xs_rm(const char *path) {
    const char *parts[] = {path};
    unsigned lens[] = {strlen(path) + 1};
    return xs_request(XS_RM, parts, lens, 1, NULL, 0);
}

int xs_set_perms_readable(const char *path, domid_t owner, domid_t reader) {
    char o[8], r[8];
    int lo = snprintf(o, sizeof o, "n%u", owner) + 1;
    int lr = snprintf(r, sizeof r, "r%u", reader) + 1;
    const char *parts[] = {path, o, r};
    unsigned lens[] = {strlen(path) + 1, (unsigned)lo, (unsigned)lr};
    return xs_request(XS_SET_PERMS, parts, lens, 3, NULL, 0);
}

int xs_watch(const char *path, const char *token) {
    const char *parts[] = {path, token};
    unsigned lens[] = {strlen(path) + 1, strlen(token) + 1};
    return xs_request(XS_WATCH, parts, lens, 2, NULL, 0);
}
