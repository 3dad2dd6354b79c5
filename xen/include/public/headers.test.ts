/**
 * Checks every numeric constant tsxen's public ABI modules export against the
 * `#define`s, enums and XEN_ERRNO entries of Xen's own headers (Debian's
 * `libxen-dev`, /usr/include/xen). `npm test` installs the package first.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as xen from "./xen.js";
import * as errno from "./errno.js";
import * as sched from "./sched.js";
import * as vcpu from "./vcpu.js";
import * as version from "./version.js";
import * as memory from "./memory.js";
import * as evtchn from "./event_channel.js";
import * as gnttab from "./grant_table.js";
import * as console_ from "./io/console.js";
import * as xs from "./io/xs_wire.js";
import * as vchan from "./io/libxenvchan.js";
import * as domctl from "./domctl.js";
import * as sysctl from "./sysctl.js";
import * as blkif from "./io/blkif.js";
import * as xenbus from "./io/xenbus.js";
import * as netif from "./io/netif.js";
import * as ioreq from "./hvm/ioreq.js";
import * as dmop from "./hvm/dm_op.js";
import * as hvmop from "./hvm/hvm_op.js";
import * as trace from "./trace.js";

const INCLUDE = process.env.XEN_INCLUDE_DIR ?? "/usr/include/xen";

/**
 * Constants that are not `#define`d in Debian's 4.17 headers, each with the
 * reason. Anything else a module exports must match a header value.
 */
const NOT_IN_HEADERS: Record<string, string> = {
  NR_VIRQS: "Xen's internal count (xen/include/xen/event.h)",
  NR_HYPERCALLS: "Xen's internal table size (xen/include/xen/hypercall.h)",
  XS_GET_FEATURE: "upstream Xen 4.19 xs_wire.h, newer than Debian's 4.17",
  XS_SET_FEATURE: "upstream Xen 4.19 xs_wire.h",
  XS_GET_QUOTA: "upstream Xen 4.19 xs_wire.h",
  XS_SET_QUOTA: "upstream Xen 4.19 xs_wire.h",
  XENCONS_IN_SIZE: "sizeof(xencons_interface.in)",
  XSD_SOCKMSG_SIZE: "sizeof(struct xsd_sockmsg)",
  XENCONS_OUT_SIZE: "sizeof(xencons_interface.out)",
  XEN_EXTRAVERSION_LEN: "sizeof(xen_extraversion_t), a typedef",
  XEN_CAPABILITIES_INFO_LEN: "sizeof(xen_capabilities_info_t), a typedef",
  XEN_CHANGESET_INFO_LEN: "sizeof(xen_changeset_info_t), a typedef",
  XEN_COMMANDLINE_LEN: "sizeof(xen_commandline_t), a typedef",
  BLKIF_SECTOR_SIZE: "blkif.h's 512-byte sector unit, stated in prose",
  BLKIF_SEGS_PER_INDIRECT_FRAME: "a macro over sizeof(struct blkif_request_segment)",
  BLKIF_RING_ENTRY: "sizeof(union blkif_sring_entry)",
  NETIF_TX_ENTRY: "sizeof(union netif_tx_sring_entry)",
  NETIF_RX_ENTRY: "sizeof(union netif_rx_sring_entry)",
  NET_TX_RING_SIZE: "__CONST_RING_SIZE(netif_tx, 4096), Linux's name",
  NET_RX_RING_SIZE: "__CONST_RING_SIZE(netif_rx, 4096), Linux's name",
  IOREQ_FLAG_STATE_MASK: "ioreq_t's state:4 bit-field, as a mask of its flags byte",
  IOREQ_FLAG_DATA_IS_PTR: "ioreq_t's data_is_ptr:1 bit-field",
  IOREQ_FLAG_DIR_READ: "ioreq_t's dir:1 bit-field",
  IOREQ_FLAG_DF: "ioreq_t's df:1 bit-field",
  TRC_HD_CYCLE_FLAG: "(1UL<<31): JS shifts are signed 32-bit, so the checker reads it negative",
};

/** Macro name → expression text, and enum names → values, from every header. */
function readHeaders(): Map<string, string> {
  const defs = new Map<string, string>();
  const files = [
    "xen.h",
    "errno.h",
    "sched.h",
    "vcpu.h",
    "version.h",
    "memory.h",
    "event_channel.h",
    "grant_table.h",
    "features.h",
    "io/console.h",
    "io/xs_wire.h",
    "io/libxenvchan.h",
    "domctl.h",
    "sysctl.h",
    "io/blkif.h",
    "io/xenbus.h",
    "io/netif.h",
    "hvm/ioreq.h",
    "hvm/dm_op.h",
    "hvm/hvm_op.h",
    "hvm/params.h",
    "trace.h",
  ];
  // tsxen's own arch header: wasm32's constants, which no Xen header has.
  // (the source tree's copy: this test runs from dist/xen/include/public).
  const archHeader = fileURLToPath(
    new URL("../../../../xen/include/public/arch-wasm32.h", import.meta.url),
  );
  for (const f of [...files, archHeader]) {
    const path = f.startsWith("/") ? f : `${INCLUDE}/${f}`;
    const text = readFileSync(path, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
    for (const m of text.matchAll(/^#\s*define\s+([A-Za-z_]\w*)[ \t]+([^\n]+)$/gm)) {
      if (!defs.has(m[1]!)) defs.set(m[1]!, m[2]!.trim());
    }
    for (const m of text.matchAll(/XEN_ERRNO\((\w+),\s*(\d+)\)/g)) defs.set(`E:${m[1]}`, m[2]!);
    for (const e of text.matchAll(/enum\s+\w+\s*\{([^}]*)\}/g)) {
      let next = 0;
      for (const item of e[1]!.split(",")) {
        const im = /^\s*(\w+)\s*(?:=\s*([^,]+))?\s*$/.exec(item.replace(/#define.*$/gm, ""));
        if (!im) continue;
        const v = im[2] !== undefined ? evaluate(im[2], defs) : next;
        defs.set(im[1]!, String(v));
        next = v + 1;
      }
    }
  }
  return defs;
}

/** Evaluates a constant C expression, expanding other macros it names. */
function evaluate(expr: string, defs: Map<string, string>, depth = 0): number {
  if (depth > 20) throw new Error(`macro recursion in ${expr}`);
  const e = expr
    .replace(/sizeof\s*\(\s*xen_ulong_t\s*\)/g, "8") // Arm/wasm32: 64-bit xen_ulong_t
    .replace(/\b(xen_mk_ulong|xen_mk_uint|xen_mk_ullong)\b/g, "")
    .replace(/\(\s*uint32_t\s*\)/g, "")
    .replace(/\b(0x[0-9a-fA-F]+|\d+)[uUlL]+\b/g, "$1")
    .replace(/\b0x[0-9a-fA-F]+|\b\d+|[A-Za-z_]\w*/g, (name) => {
      if (/^\d/.test(name)) return name;
      const d = defs.get(name);
      if (d === undefined) throw new Error(`unknown macro ${name} in ${expr}`);
      return `(${evaluate(d, defs, depth + 1)})`;
    });
  if (!/^[\s\d()xa-fA-F+\-*<>|&~]*$/.test(e)) throw new Error(`not a constant: ${expr}`);
  return Number(new Function(`return (${e});`)());
}

const modules = {
  xen,
  sched,
  vcpu,
  version,
  memory,
  evtchn,
  gnttab,
  console_,
  xs,
  vchan,
  domctl,
  sysctl,
  blkif,
  xenbus,
  netif,
  ioreq,
  dmop,
  hvmop,
  trace,
};

test("libxen-dev headers are installed", () => {
  assert.ok(
    existsSync(`${INCLUDE}/xen.h`),
    `Xen's public headers are missing at ${INCLUDE}: install Debian's libxen-dev`,
  );
});

test("every exported numeric constant matches Xen's headers", () => {
  const defs = readHeaders();
  let checked = 0;
  for (const [mod, exports] of Object.entries(modules)) {
    for (const [name, value] of Object.entries(exports)) {
      if (typeof value !== "number" || !/^[A-Z_][A-Z0-9_a-z]*$/.test(name)) continue;
      if (name in NOT_IN_HEADERS) continue;
      const def = defs.get(name);
      assert.ok(def !== undefined, `${mod}.${name} is not defined in Xen's headers`);
      assert.equal(value, evaluate(def, defs), `${mod}.${name}`);
      checked++;
    }
  }
  for (const [name, value] of Object.entries(xen.HYPERVISOR)) {
    assert.equal(value, evaluate(defs.get(name) ?? "NaN", defs), name);
    checked++;
  }
  assert.ok(checked > 250, `only ${checked} constants checked`);
});

test("every XEN_ERRNO in errno.h is in XenErrno with the same value", () => {
  const defs = readHeaders();
  const names = [...defs.keys()].filter((k) => k.startsWith("E:"));
  assert.ok(names.length > 40);
  for (const k of names) {
    assert.equal(errno.XenErrno[k.slice(2) as errno.XenErrnoName], Number(defs.get(k)), k);
  }
});

test("xs_wire error table has the header's names in its order", () => {
  const text = readFileSync(`${INCLUDE}/io/xs_wire.h`, "utf8");
  const names = [...text.matchAll(/XSD_ERROR\((E\w+)\)/g)].map((m) => m[1]);
  assert.deepEqual(names, [...xs.XSD_ERRORS]);
});
