/*
 * pvecho: an HVM guest with PV drivers. A WASI program, built with Debian's
 * clang and wasi-libc against Xen's own public headers, that also speaks
 * Xen's PV interfaces, as Linux HVM guests do with their PV drivers:
 *
 *   - it finds shared_info and its xenstore ring through hvm_op and memory_op,
 *     and talks to xenstored over the ring (io/xs_wire.h);
 *   - it announces its PV drivers (HVM_PARAM_CALLBACK_IRQ) and watches
 *     control/shutdown, so that `xl shutdown` asks it to power off;
 *   - it serves a vchan (io/libxenvchan.h) at data/vchan/echo to domain
 *     PEER and echoes what the client sends, as mini-os's vchan-echo does:
 *     a ring page of its own memory granted to the peer, an event channel,
 *     and the rendezvous in xenstore.
 *
 * Usage: pvecho PEER      (run with type = "hvm"; see pvecho.cfg)
 *
 * It prints on its serial port (stdout, through the device model) what it
 * does; the tests read those lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xen/io/libxenvchan.h>

#include "xenpv.h"

/* One granted page: the header, then the rings (order 10 at 1024, order 11 at 2048). */
static uint8_t ring_page[4096] __attribute__((aligned(4096)));
static struct vchan_interface *const shr = (struct vchan_interface *)ring_page;
#define LEFT_ORDER 10  /* client -> server */
#define RIGHT_ORDER 11 /* server -> client */
#define LEFT (ring_page + 1024)
#define RIGHT (ring_page + 2048)
#define LEFT_SIZE (1u << LEFT_ORDER)
#define RIGHT_SIZE (1u << RIGHT_ORDER)

static evtchn_port_t vchan_port;

static void fail(const char *what, int rc) {
    printf("pvecho: %s failed: %d\n", what, rc);
    fflush(stdout);
    exit(1);
}

/* The client asked to hear of `bit` (our reads or writes): tell it once. */
static void send_notify(uint8_t bit) {
    if (__atomic_fetch_and(&shr->srv_notify, (uint8_t)~bit, __ATOMIC_SEQ_CST) & bit)
        xenpv_evtchn_send(vchan_port);
}

/* Asks the client to tell us of `bit` (its writes or reads). */
static void request_notify(uint8_t bit) { __atomic_fetch_or(&shr->cli_notify, bit, __ATOMIC_SEQ_CST); }

static unsigned readable(void) {
    return __atomic_load_n(&shr->left.prod, __ATOMIC_ACQUIRE) - shr->left.cons;
}
static unsigned writable(void) {
    return RIGHT_SIZE - (shr->right.prod - __atomic_load_n(&shr->right.cons, __ATOMIC_ACQUIRE));
}

/* Serves data/vchan/echo to `peer`, as libxenvchan_server_init does. */
static void serve(domid_t peer) {
    shr->left_order = LEFT_ORDER;
    shr->right_order = RIGHT_ORDER;
    shr->srv_live = 1;
    shr->cli_live = 2; /* not connected yet */
    shr->cli_notify = VCHAN_NOTIFY_WRITE;
    int ref = xenpv_grant(peer, (uintptr_t)ring_page >> 12, 0);
    if (ref < 0) fail("grant", ref);
    int rc = xenpv_evtchn_alloc_unbound(peer, &vchan_port);
    if (rc < 0) fail("alloc_unbound", rc);
    char v[16];
    snprintf(v, sizeof v, "%d", ref);
    if ((rc = xs_write("data/vchan/echo/ring-ref", v)) < 0) fail("xenstore write ring-ref", rc);
    snprintf(v, sizeof v, "%u", vchan_port);
    if ((rc = xs_write("data/vchan/echo/event-channel", v)) < 0) fail("xenstore write event-channel", rc);
    if ((rc = xs_set_perms_readable("data/vchan/echo/ring-ref", xenpv_domid, peer)) < 0 ||
        (rc = xs_set_perms_readable("data/vchan/echo/event-channel", xenpv_domid, peer)) < 0)
        fail("xenstore set_perms", rc);
    printf("pvecho: d%u serves d%u at data/vchan/echo (gref %d, port %u)\n", xenpv_domid, peer, ref,
           vchan_port);
    fflush(stdout);
}

static uint8_t buf[RIGHT_SIZE];

/*
 * Acts on control/shutdown when its watch fired, as a PV guest's shutdown
 * watch does: acknowledges the request by clearing the node (as Linux's
 * xenbus handler does) and shuts the domain down with SCHEDOP_shutdown.
 */
static void check_shutdown(void) {
    char path[256], token[64], what[32];
    while (xs_watch_event(path, sizeof path, token, sizeof token)) {
        if (xs_read("control/shutdown", what, sizeof what) < 0 || what[0] == 0) continue;
        printf("pvecho: control/shutdown says %s\n", what);
        fflush(stdout);
        xs_write("control/shutdown", "");
        struct sched_shutdown s = {.reason = strcmp(what, "reboot") == 0 ? SHUTDOWN_reboot : SHUTDOWN_poweroff};
        HYPERVISOR_sched_op(SCHEDOP_shutdown, &s);
    }
}

/* Echoes until the client closes; the bytes echoed. */
static uint64_t echo(void) {
    uint64_t total = 0;
    unsigned pending = 0, sent = 0;
    evtchn_port_t ports[2] = {vchan_port, xs_port()};
    for (;;) {
        xenpv_evtchn_test_and_clear(vchan_port);
        int progress = 0;
        if (sent == pending) {
            unsigned n = readable();
            if (n > sizeof buf) n = sizeof buf;
            for (unsigned i = 0; i < n; i++) buf[i] = LEFT[(shr->left.cons + i) & (LEFT_SIZE - 1)];
            if (n > 0) {
                __atomic_store_n(&shr->left.cons, shr->left.cons + n, __ATOMIC_RELEASE);
                send_notify(VCHAN_NOTIFY_READ);
                pending = n;
                sent = 0;
                total += n;
                progress = 1;
            }
        }
        if (sent < pending) {
            unsigned n = writable();
            if (n > pending - sent) n = pending - sent;
            for (unsigned i = 0; i < n; i++) RIGHT[(shr->right.prod + i) & (RIGHT_SIZE - 1)] = buf[sent + i];
            if (n > 0) {
                __atomic_store_n(&shr->right.prod, shr->right.prod + n, __ATOMIC_RELEASE);
                send_notify(VCHAN_NOTIFY_WRITE);
                sent += n;
                progress = 1;
            }
        }
        if (progress) continue;
        if (__atomic_load_n(&shr->cli_live, __ATOMIC_ACQUIRE) == 0) return total;
        /* Nothing to do: ask to be told, look once more, then wait. */
        request_notify(sent == pending ? VCHAN_NOTIFY_WRITE : VCHAN_NOTIFY_READ);
        if ((sent == pending && readable() > 0) || (sent < pending && writable() > 0)) continue;
        xenpv_evtchn_poll(ports, 2, 0);
        xenpv_evtchn_test_and_clear(xs_port());
        check_shutdown();
    }
}

/* Waits for control/shutdown. */
static void await_shutdown(void) {
    evtchn_port_t port = xs_port();
    for (;;) {
        check_shutdown();
        if (!xenpv_evtchn_test_and_clear(port)) xenpv_evtchn_poll(&port, 1, 0);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: pvecho PEER\n");
        return 2;
    }
    domid_t peer = (domid_t)atoi(argv[1]);
    int version = HYPERVISOR_xen_version(XENVER_version, NULL);
    xen_extraversion_t extra;
    HYPERVISOR_xen_version(XENVER_extraversion, extra);
    printf("pvecho: Xen %d.%d%s\n", version >> 16, version & 0xffff, extra);
    int rc = xenpv_init();
    if (rc < 0) fail("xenpv_init", rc);
    char name[64];
    if ((rc = xs_read("name", name, sizeof name)) < 0) fail("xenstore read name", rc);
    printf("pvecho: I am d%u (%s); xenstore ring at pfn %u, port %u\n", xenpv_domid, name,
           WASM32_PFN_XENSTORE, xs_port());
    /* PV drivers are here: the toolstack may now ask us to shut down through xenstore. */
    if ((rc = xenpv_set_param(HVM_PARAM_CALLBACK_IRQ, (uint64_t)HVM_PARAM_CALLBACK_TYPE_POLLED << 56)) < 0)
        fail("set HVM_PARAM_CALLBACK_IRQ", rc);
    if ((rc = xs_watch("control/shutdown", "shutdown")) < 0) fail("xenstore watch", rc);
    /* As Linux says once its shutdown watch is set: these requests are understood. */
    xs_write("control/feature-poweroff", "1");
    xs_write("control/feature-reboot", "1");
    if ((rc = xs_write("data/pvecho", "ready")) < 0) fail("xenstore write", rc);
    fflush(stdout);
    serve(peer);
    uint64_t total = echo();
    printf("pvecho: echoed %llu bytes; the client closed\n", (unsigned long long)total);
    fflush(stdout);
    __atomic_store_n(&shr->srv_live, 0, __ATOMIC_RELEASE);
    xenpv_evtchn_send(vchan_port);
    xs_write("data/pvecho", "done");
    await_shutdown();
    return 0;
}
