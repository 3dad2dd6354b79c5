/**
 * The vchan walkthrough of docs/tutorial-vchan.md, one runnable step at a
 * time: `node dist/tools/libvchan/tutorial.js STEP`, where each step boots a
 * host, does the steps before it, then its own, and prints what it did and
 * what Xen's debug keys and xenstore show afterwards.
 *
 *   grant       Dom0 grants a page to the guest (GTF_permit_access)
 *   port        Dom0 offers an unbound event channel to the guest
 *   rendezvous  Dom0 writes ring-ref and event-channel into xenstore
 *   connect     the guest connects (vchan-echo client) and data flows
 *   library     the same with tools/libvchan doing the three first steps
 */
import { guestPath } from "../../extras/mini-os/paths.js";
import { Host } from "../host/host.js";
import { Vchan } from "./vchan.js";
import { DOM0 } from "../xenstored/perms.js";
import { vchan_interface, VCHAN_NOTIFY_WRITE } from "../../xen/include/public/io/libxenvchan.js";

const STEPS = ["grant", "port", "rendezvous", "connect", "library"] as const;
type Step = (typeof STEPS)[number];

/** The guest that will be our peer, and where the rendezvous goes. */
const GUEST = 7;
const PATH = "/local/domain/0/data/vchan/echo";

function show(host: Host, keys: string): void {
  host.hv.console.read(true);
  host.debugKeys(keys);
  for (const l of host.dmesg().split("\n")) if (l.trim()) console.log(`    ${l}`);
}

function xsLs(host: Host, path: string): void {
  const walk = (p: string, depth: number): void => {
    const n = host.xenstored.store.get(p);
    if (!n) return;
    const perms = n.perms.map((x) => `${"nrwb"[x.access]}${x.domid}`).join(",");
    console.log(`    ${p} = "${new TextDecoder().decode(n.value)}"   (${perms})`);
    for (const c of n.children) walk(`${p}/${c}`, depth + 1);
  };
  walk(path, 0);
}

/** Runs the walkthrough up to and including `until`; resolves with what the guest printed. */
export async function tutorial(
  until: Step,
  log: (s: string) => void = console.log,
): Promise<string> {
  const host = new Host({ memoryBytes: 1024 ** 3, dom0MemoryBytes: 64 * 1024 ** 2 });
  try {
    const at = STEPS.indexOf(until);
    if (until === "library") {
      log(
        "step library: Vchan.server() grants the page, offers the port and writes the rendezvous",
      );
      const v = Vchan.server(
        { drivers: host.dom0, xenstored: host.xenstored },
        GUEST,
        PATH,
        1024,
        2048,
      );
      xsLs(host, PATH);
      return await connect(host, v, log);
    }
    // 1. A page of Dom0's, granted to the guest: the shared page of the channel.
    log("step grant: Dom0 shares one page with the guest (gntalloc)");
    const shr = host.dom0.openGntshr();
    const [page] = shr.share(GUEST, 1);
    const dv = new DataView(page!.page.buffer, page!.page.byteOffset, 4096);
    // The vchan layout: left ring (guest → Dom0) at 1 KiB, right ring at 2 KiB.
    dv.setUint16(vchan_interface.fields.left_order.offset, 10, true);
    dv.setUint16(vchan_interface.fields.right_order.offset, 11, true);
    dv.setUint8(vchan_interface.fields.cli_live.offset, 2);
    dv.setUint8(vchan_interface.fields.srv_live.offset, 1);
    dv.setUint8(vchan_interface.fields.cli_notify.offset, VCHAN_NOTIFY_WRITE);
    log(`  grant reference ${page!.ref} gives d${GUEST} page ${page!.pfn} of Dom0's memory`);
    show(host, "g");
    if (at < 1) return "";
    // 2. An event channel the guest may bind to.
    log("step port: Dom0 offers an unbound event channel to the guest");
    const evtchn = host.dom0.openEvtchn();
    const port = evtchn.bindUnboundPort(GUEST);
    log(`  port ${port} in Dom0, unbound, for d${GUEST}`);
    show(host, "e");
    if (at < 2) return "";
    // 3. The rendezvous: where the guest finds the page and the port.
    log("step rendezvous: Dom0 writes ring-ref and event-channel, readable by the guest only");
    const xs = host.xenstored;
    for (const [k, v] of [
      ["ring-ref", page!.ref],
      ["event-channel", port],
    ] as const) {
      xs.writeText(`${PATH}/${k}`, String(v));
      xs.setPerms(xs.store, DOM0, `${PATH}/${k}`, [
        { domid: 0, access: 0 },
        { domid: GUEST, access: 1 },
      ]);
    }
    xsLs(host, PATH);
    if (at < 3) return "";
    // 4. The guest connects; Dom0 echoes through the library's reader, which
    //    takes over the same page and port (what step 'library' does in one call).
    evtchn.dispose();
    shr.dispose();
    const v = Vchan.server(
      { drivers: host.dom0, xenstored: host.xenstored },
      GUEST,
      PATH,
      1024,
      2048,
    );
    return await connect(host, v, log);
  } finally {
    await host.shutdown();
  }
}

async function connect(host: Host, v: Vchan, log: (s: string) => void): Promise<string> {
  log(
    `step connect: guest d${GUEST} (vchan-echo) connects to ${PATH} and streams 64 KiB; Dom0 echoes`,
  );
  await host.create({
    name: "vchan-guest",
    kernel: guestPath("vchan-echo"),
    memory: 4,
    domid: GUEST,
    cmdline: "role=client peer=0 bytes=65536",
    xenstore: true,
  });
  let echoed = 0;
  while (!host.hv.domains.get(GUEST)?.isShutdown) {
    const b = v.read(4096);
    if (b.length > 0) {
      echoed += b.length;
      await v.writeAll(b);
    } else await v.wait();
  }
  v.close();
  const out = host.readConsole(GUEST);
  log(`  Dom0 echoed ${echoed} bytes; the guest says:`);
  for (const l of out.split("\n")) if (l.trim()) log(`    ${l}`);
  return out;
}

if (process.argv[1]?.endsWith("tutorial.js")) {
  const step = process.argv[2] as Step | undefined;
  if (!step || !STEPS.includes(step)) {
    console.error(`usage: node dist/tools/libvchan/tutorial.js ${STEPS.join("|")}`);
    process.exit(2);
  }
  await tutorial(step);
}
