/*
 * xenpv.h: PV drivers for an HVM program on tsxen, in plain C over Xen's own
 * public headers (libxen-dev) and tsxen's arch-wasm32.h.
 *
 * What a Linux HVM guest's PV drivers do, in the few hundred lines a WASI
 * program needs: make hypercalls (the xen.hypercall import), find its
 * shared_info, xenstore ring and port through hvm_op, talk to xenstored over
 * the ring (io/xs_wire.h), grant pages and bind event channels. A WASI
 * program cannot take an interrupt, so events are polled: a driver waits in
 * SCHEDOP_poll and looks at shared_info's pending bits when it returns.
 *
 * docs/hvm.md ("PV drivers on HVM") describes the contract; pvecho.c uses it.
 */
#ifndef XENPV_H
#define XENPV_H

#include <stddef.h>
#include <stdint.h>

#include <xen/xen.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/memory.h>
#include <xen/sched.h>
#include <xen/version.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/io/xs_wire.h>

/* The hypercall instruction (arch-wasm32.h). */
__attribute__((import_module(WASM32_HYPERCALL_MODULE), import_name(WASM32_HYPERCALL_NAME)))
int _hypercall(int op, int a1, int a2, int a3, int a4, int a5);

#define HYPERCALL(op, a1, a2, a3) _hypercall(__HYPERVISOR_##op, (int)(a1), (int)(a2), (int)(a3), 0, 0)

static inline int HYPERVISOR_xen_version(int cmd, void *arg) { return HYPERCALL(xen_version, cmd, arg, 0); }
static inline int HYPERVISOR_memory_op(unsigned cmd, void *arg) { return HYPERCALL(memory_op, cmd, arg, 0); }
static inline int HYPERVISOR_sched_op(int cmd, void *arg) { return HYPERCALL(sched_op, cmd, arg, 0); }
static inline int HYPERVISOR_event_channel_op(int cmd, void *arg) { return HYPERCALL(event_channel_op, cmd, arg, 0); }
static inline int HYPERVISOR_grant_table_op(int cmd, void *arg, unsigned count) { return HYPERCALL(grant_table_op, cmd, arg, count); }
static inline int HYPERVISOR_hvm_op(int op, void *arg) { return HYPERCALL(hvm_op, op, arg, 0); }
static inline int HYPERVISOR_multicall(void *calls, unsigned n) { return HYPERCALL(multicall, calls, n, 0); }
static inline int HYPERVISOR_console_io(int cmd, int count, const char *s) { return HYPERCALL(console_io, cmd, count, s); }

/* What xenpv_init found. */
extern domid_t xenpv_domid;
extern shared_info_t *xenpv_shared_info;

/*
 * Maps shared_info (XENMEM_add_to_physmap at its usual frame), reads the
 * xenstore page and port (HVMOP_get_param) and this domain's id from
 * xenstore. Returns 0, or -errno naming nothing: the caller says which step.
 */
int xenpv_init(void);

/* HVM params. */
int xenpv_get_param(uint32_t index, uint64_t *value);
int xenpv_set_param(uint32_t index, uint64_t value);

/* Event channels (2-level ABI). */
int xenpv_evtchn_alloc_unbound(domid_t remote, evtchn_port_t *port);
int xenpv_evtchn_send(evtchn_port_t port);
int xenpv_evtchn_close(evtchn_port_t port);
/* Clears `port`'s pending bit; whether it was set. */
int xenpv_evtchn_test_and_clear(evtchn_port_t port);
/* Waits until one of `ports` is pending (or `timeout_ns` of system time passes, 0: none). */
int xenpv_evtchn_poll(evtchn_port_t *ports, unsigned n, uint64_t timeout_ns);

/* Grant table v1: grants `frame` to `domid`; the reference, or -errno. */
int xenpv_grant(domid_t domid, xen_pfn_t frame, int readonly);
void xenpv_grant_end(grant_ref_t ref);

/*
 * xenstore over the ring. Paths without a leading '/' are relative to the
 * domain's home, /local/domain/<domid>, as xenstored resolves them.
 * Values are NUL-terminated copies into `buf`; the results are 0 or -errno
 * (xenstored's error names mapped to errno values).
 */
int xs_read(const char *path, char *buf, unsigned cap);
int xs_write(const char *path, const char *value);
int xs_rm(const char *path);
/* Sets `path`'s permissions: owner `owner` (no access for others) and read access for `reader`. */
int xs_set_perms_readable(const char *path, domid_t owner, domid_t reader);
int xs_watch(const char *path, const char *token);
/*
 * The next watch event already received, if any: 1 with path and token
 * copied, 0 when none. Events that arrive while a request waits for its
 * reply are kept (up to 16).
 */
int xs_watch_event(char *path, unsigned path_cap, char *token, unsigned token_cap);
/* Takes what the ring holds (replies are read by the requests); events are kept. */
void xs_poll(void);
/* The xenstore port, for a caller that waits on it with others. */
evtchn_port_t xs_port(void);

#endif
