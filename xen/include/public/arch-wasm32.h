/* SPDX-License-Identifier: MIT */
/*
 * arch-wasm32.h: tsxen's wasm32 architecture for Xen's public headers.
 *
 * Xen's xen.h picks an architecture header by the compiler's target
 * (arch-x86/xen.h, arch-arm.h). This is the one for wasm32, for C guests
 * built with clang --target=wasm32-wasi: an HVM program with PV drivers
 * (docs/hvm.md, "PV drivers on HVM") includes Xen's own headers from
 * libxen-dev with this one beside them, and extras/hvm/build.ts adds wasm32
 * to xen.h's architecture switch, as a new port of Xen adds itself there.
 *
 * The ABI is docs/arch-wasm32.md's, which the TypeScript side keeps in
 * xen/include/public/arch-wasm32.ts: where x86 and Arm differ, wasm32 takes
 * Arm's choice (xen_ulong_t, xen_pfn_t and every guest handle inside a
 * struct are 64 bits wide and 8-byte aligned), except that shared_info holds
 * 32 vcpu_info slots and vcpu_info has an upcall mask, as on x86.
 * test/integration/hvm_pv.test.ts compiles the structs with clang and checks
 * every size and offset against the TypeScript layouts.
 */
#ifndef __XEN_PUBLIC_ARCH_WASM32_H__
#define __XEN_PUBLIC_ARCH_WASM32_H__

#define int64_aligned_t int64_t __attribute__((aligned(8)))
#define uint64_aligned_t uint64_t __attribute__((aligned(8)))

#ifndef __ASSEMBLY__

/*
 * A guest handle is a pointer to guest memory. Inside a struct it takes 64
 * bits (the pointer in the low half), so that layouts are the same for the
 * guest and for a 64-bit toolstack; as a hypercall argument it is the
 * 32-bit pointer itself.
 */
#define ___DEFINE_XEN_GUEST_HANDLE(name, type)                                 \
    typedef union { type *p; uint32_t q; } __guest_handle_##name;              \
    typedef union { type *p; uint64_aligned_t q; } __guest_handle_64_##name
#define __DEFINE_XEN_GUEST_HANDLE(name, type)                                  \
    ___DEFINE_XEN_GUEST_HANDLE(name, type);                                    \
    ___DEFINE_XEN_GUEST_HANDLE(const_##name, const type)
#define DEFINE_XEN_GUEST_HANDLE(name) __DEFINE_XEN_GUEST_HANDLE(name, name)
#define __XEN_GUEST_HANDLE(name) __guest_handle_64_##name
#define XEN_GUEST_HANDLE(name) __XEN_GUEST_HANDLE(name)
#define XEN_GUEST_HANDLE_PARAM(name) __guest_handle_##name
/* The whole 64 bits are written: the upper half must be zero. */
#define set_xen_guest_handle_raw(hnd, val)                                     \
    do {                                                                       \
        __typeof__(&(hnd)) _wasm32_hnd = &(hnd);                               \
        _wasm32_hnd->q = 0;                                                    \
        _wasm32_hnd->p = (val);                                                \
    } while (0)
#define set_xen_guest_handle(hnd, val) set_xen_guest_handle_raw(hnd, val)

/* Guest frame numbers: wasm32 guests are auto-translated, a pfn is a gfn. */
typedef uint64_t xen_pfn_t;
#define PRI_xen_pfn PRIx64
#define PRIu_xen_pfn PRIu64

typedef uint64_t xen_ulong_t;
#define PRI_xen_ulong PRIx64

/* vcpu_info slots in shared_info: every vCPU of a wasm32 domain has one. */
#define XEN_LEGACY_MAX_VCPUS 32

/* vcpu_info has evtchn_upcall_mask (byte 1), as on x86. */
#define XEN_HAVE_PV_UPCALL_MASK 1

struct arch_vcpu_info {
};
typedef struct arch_vcpu_info arch_vcpu_info_t;

struct arch_shared_info {
};
typedef struct arch_shared_info arch_shared_info_t;

typedef uint64_t xen_callback_t;

/*
 * The hypercall instruction: the module's import xen.hypercall, of type
 * (i32, i32, i32, i32, i32, i32) -> i32. Arguments are 32-bit; a 64-bit
 * one (set_timer_op's deadline) travels as two, low half first. The result
 * is 0 or a count, or -errno with Xen's errno values.
 */
#define WASM32_HYPERCALL_MODULE "xen"
#define WASM32_HYPERCALL_NAME "hypercall"

/*
 * HVM_PARAM_CALLBACK_IRQ's arch-specific type (2: a vector on x86, a PPI on
 * Arm). A wasm32 program takes no interrupt: it sets this type (the low bits
 * unused) to say that its PV drivers are there and look at their events
 * themselves, after SCHEDOP_poll or SCHEDOP_block returns. The toolstack
 * then treats it as a guest with PV drivers (xl shutdown uses
 * control/shutdown); the hypervisor delivers nothing.
 */
#define HVM_PARAM_CALLBACK_TYPE_POLLED 2

/*
 * The architecture area: the first 256 KiB of a wasm32 guest's memory.
 * A PV kernel and an HVM program with PV drivers keep their data above it
 * (link with -Wl,--global-base=0x40000); the hypervisor and the toolstack
 * place these pages there. Frame numbers (4 KiB pages).
 */
#define WASM32_PFN_START_INFO  1 /* start_info (PV kernels)                */
#define WASM32_PFN_SHARED_INFO 2 /* shared_info, until moved by
                                    XENMEM_add_to_physmap                  */
#define WASM32_PFN_CONSOLE     3 /* xencons_interface: HVM_PARAM_CONSOLE_PFN */
#define WASM32_PFN_XENSTORE    4 /* xenstore_domain_interface:
                                    HVM_PARAM_STORE_PFN                    */
#define WASM32_PFN_BOOT_INFO   5 /* struct arch_wasm32_boot                */
#define WASM32_PFN_GRANT_TABLE 6 /* grant frames 0..9 (setup_table)        */
#define WASM32_IMAGE_BASE 0x40000

/*
 * A vCPU's context (XEN_DOMCTL_getvcpucontext / setvcpucontext): the
 * export it starts at and that export's argument, whether its main and
 * upcall contexts are unwound into their save areas, and the hypercall it
 * makes again when it resumes. docs/arch-wasm32.md, "Building a domain".
 */
#define VGCF_online (1 << 5)
#define WASM32_ENTRY_START      0 /* _start(start_info)  */
#define WASM32_ENTRY_START_VCPU 1 /* _start_vcpu(vcpuid) */
struct vcpu_guest_context {
    uint64_aligned_t flags;     /* VGCF_online                       */
    uint32_t entry;             /* WASM32_ENTRY_*                    */
    uint32_t arg;
    uint32_t runstate;          /* RUNSTATE_* (getvcpucontext)       */
    uint32_t suspended;         /* which contexts are unwound        */
    uint64_aligned_t save_area; /* the main context's save area      */
    uint64_aligned_t cont_op;   /* the hypercall made again, or ~0   */
    uint64_aligned_t cont_args[5];
};
typedef struct vcpu_guest_context vcpu_guest_context_t;
DEFINE_XEN_GUEST_HANDLE(vcpu_guest_context_t);

/* The page at WASM32_PFN_BOOT_INFO. */
struct arch_wasm32_boot {
    uint32_t domid;
    uint32_t max_vcpus;
};

#if defined(__XEN__) || defined(__XEN_TOOLS__)
/* XEN_DOMCTL_createdomain's arch part: nothing yet, kept at x86's size. */
struct xen_arch_domainconfig {
    uint32_t flags;
    uint32_t _reserved;
};

/*
 * tsxen's wasm32 domctls, numbered clear of Xen's. A wasm32 domain's code
 * is a module, not bytes in its memory: the domain builder hands it to the
 * hypervisor with XEN_DOMCTL_wasm32_module (upload its bytes, then bind it
 * to the domain by their sha256). XEN_DOMCTL_wasm32_set_label names the
 * domain in the hypervisor's own messages. Their guest handles are plain
 * 64-bit addresses here: xen.h defines the handle types after this header.
 */
#define XEN_DOMCTL_wasm32_module    2000
#define XEN_DOMCTL_wasm32_set_label 2001
#define XEN_DOMCTL_wasm32_getcontext 2002
#define XEN_DOMCTL_wasm32_setcontext 2003

#define XEN_DOMCTL_WASM32_MODULE_bind   0
#define XEN_DOMCTL_WASM32_MODULE_upload 1
/* The bound module's vCPU instances, made ahead (paused, vCPUs offline). */
#define XEN_DOMCTL_WASM32_MODULE_instantiate 2
/* OUT flags of a bind: what the module exports. */
#define XEN_DOMCTL_WASM32_MODULE_has_callback   (1U << 0)
#define XEN_DOMCTL_WASM32_MODULE_has_start_vcpu (1U << 1)
/*
 * IN flags of an upload and a bind: a WASI program for an HVM domain, made
 * saveable (xl.cfg nomigrate=0); OUT of such a bind: it has PV drivers.
 */
#define XEN_DOMCTL_WASM32_MODULE_hvm        (1U << 2)
#define XEN_DOMCTL_WASM32_MODULE_saveable   (1U << 3)
#define XEN_DOMCTL_WASM32_MODULE_pv_drivers (1U << 4)

struct xen_domctl_wasm32_module {
    uint32_t op;             /* IN: XEN_DOMCTL_WASM32_MODULE_*             */
    uint32_t flags;          /* IN (HVM) / OUT (bind)                      */
    uint8_t sha256[32];      /* IN: of the module's bytes as built         */
    uint64_aligned_t size;   /* IN (upload): the whole module's bytes      */
    uint64_aligned_t offset; /* IN (upload): where this chunk goes         */
    uint64_aligned_t buffer; /* IN: the chunk / OUT (bind): refusal text   */
    uint32_t len;            /* IN: the chunk's or the buffer's bytes      */
    uint32_t min_pages;      /* OUT (bind): memory import minimum, 64 KiB  */
};

/* A PV domain's context beyond its pages, as bytes (docs/save-format.md). */
struct xen_domctl_wasm32_context {
    uint64_aligned_t buffer; /* IN: where the bytes are or go (0: size only) */
    uint32_t size;           /* IN: the buffer's bytes / OUT: the context's */
    uint32_t _pad;
};

struct xen_domctl_wasm32_set_label {
    uint64_aligned_t label;  /* IN: UTF-8, no NUL, no '/'                  */
    uint32_t len;            /* IN: 1..64                                  */
};

/*
 * tsxen's trace events (wasm32; Xen has no id for them): a grant copy,
 * beside TRC_MEM_PAGE_GRANT_MAP and _UNMAP, and an event channel's send
 * and upcall, in a PV subclass Xen leaves unused. docs/tracing.md.
 */
#define TRC_MEM_PAGE_GRANT_COPY (TRC_MEM + 0x20)
#define TRC_PV_EVTCHN           0x00204000
#define TRC_PV_EVTCHN_SEND      (TRC_PV_EVTCHN + 1)
#define TRC_PV_EVTCHN_UPCALL    (TRC_PV_EVTCHN + 2)
#endif

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_ARCH_WASM32_H__ */
