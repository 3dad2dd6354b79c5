/**
 * xc_domain_dumpcore (libxc's `xc_core.c`): a guest's memory and vCPU state
 * as an ELF core file in Xen's dump-core format (xen-doc
 * `misc/dump-core-format.txt`), which `readelf -a` and crash tools read:
 *
 *   ELF64, ET_CORE, no program headers; e_machine is the dumping system's,
 *   as the format says for guests whose architecture ELF has no number for
 *   (wasm32 has none);
 *   .note.Xen          notes named "Xen": DUMPCORE_NONE, DUMPCORE_HEADER
 *                      (magic, vCPUs, pages, page size), DUMPCORE_XEN_VERSION
 *                      (the hypervisor's xen_version answers) and
 *                      DUMPCORE_FORMAT_VERSION (0.1);
 *   .xen_prstatus      each vCPU's vcpu_guest_context (XEN_DOMCTL_getvcpucontext;
 *                      wasm32's struct, public/arch-wasm32.ts);
 *   .xen_shared_info   the domain's shared_info page (PV domains);
 *   .xen_pfn           the pfn of each page that follows (wasm32 guests are
 *                      auto-translated, so pfns, not a p2m);
 *   .xen_pages         the pages, page-aligned in the file.
 *
 * Everything is asked of the hypervisor as libxc asks it: getdomaininfo,
 * getvcpucontext, maximum_gpfn and xen_version through hypercalls, and the
 * pages through Dom0's foreign mapping. The dump is taken live, as Xen's
 * is (xl dump-core does not pause the domain). The file is written in
 * pieces, between which the host's other work goes on.
 */
import { constants, fstatSync } from "node:fs";
import { open } from "node:fs/promises";
import { arch } from "node:process";
import {
  shared_info,
  start_info,
  vcpu_guest_context,
} from "../../xen/include/public/arch-wasm32.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import type { XcInterface } from "./xc.js";

/** Note types (public/elfnote.h) and magics (xc_core.h). */
export const XEN_ELFNOTE_DUMPCORE_NONE = 0x2000000;
export const XEN_ELFNOTE_DUMPCORE_HEADER = 0x2000001;
export const XEN_ELFNOTE_DUMPCORE_XEN_VERSION = 0x2000002;
export const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION = 0x2000003;
export const XC_CORE_MAGIC = 0xf00febed;
export const XC_CORE_MAGIC_HVM = 0xf00febee;
/** Format 0.1: major in the upper 32 bits. */
const DUMPCORE_FORMAT_VERSION = 1;

const ET_CORE = 4;
const SHT_PROGBITS = 1;
const SHT_STRTAB = 3;
const SHT_NOTE = 7;
const EHDR_SIZE = 64;
const SHDR_SIZE = 64;
/** e_machine of the dumping system (EM_X86_64, EM_AARCH64; EM_NONE otherwise). */
const E_MACHINE: Record<string, number> = { x64: 62, arm64: 183 };
/** Bytes written at once: the host runs between pieces. */
const CHUNK = 4 * 1024 * 1024;

/** One note: "Xen" as its name, `type`, and `desc` padded to 4 bytes. */
function note(type: number, desc: Uint8Array): Buffer {
  const pad = (n: number): number => Math.ceil(n / 4) * 4;
  const b = Buffer.alloc(12 + 4 + pad(desc.length));
  b.writeUInt32LE(4, 0);
  b.writeUInt32LE(desc.length, 4);
  b.writeUInt32LE(type, 8);
  b.write("Xen\0", 12, "latin1");
  b.set(desc, 16);
  return b;
}

/** Writes domain `domid`'s core to `path`; the number of pages written. Throws naming what failed. */
export async function xcDomainDumpcore(
  xc: XcInterface,
  mapForeign: (domid: number) => WebAssembly.Memory,
  domid: number,
  path: string,
): Promise<number> {
  const info = await xc.domainGetInfo(domid);
  const nrVcpus = info.maxVcpuId + 1;
  const contexts: Uint8Array[] = [];
  for (let v = 0; v < nrVcpus; v++) contexts.push(await xc.vcpuGetContext(domid, v));
  const nrPages = (await xc.maximumGpfn(domid)) + 1;
  const ver = await xc.versionRecords();
  const memory = mapForeign(domid);
  const mem = new Uint8Array(memory.buffer);
  // A PV guest's shared_info is where its start_info says (its pfn 1).
  let sharedInfo: Uint8Array | undefined;
  if (!info.hvm) {
    const si = new DataView(memory.buffer).getUint32(
      PAGE_SIZE + start_info.fields.shared_info.offset,
      true,
    );
    if (si + shared_info.size <= mem.length) sharedInfo = mem.slice(si, si + shared_info.size);
  }

  // Notes.
  // struct xen_dumpcore_elfnote_header_desc: four uint64_t.
  const header = Buffer.alloc(32);
  header.writeUInt32LE(info.hvm ? XC_CORE_MAGIC_HVM : XC_CORE_MAGIC, 0);
  header.writeUInt32LE(nrVcpus, 8);
  header.writeUInt32LE(nrPages, 16);
  header.writeUInt32LE(PAGE_SIZE, 24);
  // struct xen_dumpcore_elfnote_xen_version_desc: major, minor (uint64_t),
  // extraversion (16), compile_info (144), capabilities (1024), changeset
  // (64), platform_parameters (8), pagesize (uint64_t).
  const version = Buffer.alloc(1280);
  version.writeUInt32LE(ver.version >>> 16, 0);
  version.writeUInt32LE(ver.version & 0xffff, 8);
  version.set(ver.extra, 16);
  version.set(ver.compileInfo, 32);
  version.set(ver.capabilities, 176);
  version.set(ver.changeset, 1200);
  version.set(ver.platform, 1264);
  version.writeUInt32LE(ver.pagesize, 1272);
  const format = Buffer.alloc(8);
  format.writeUInt32LE(DUMPCORE_FORMAT_VERSION, 0);
  const notes = Buffer.concat([
    note(XEN_ELFNOTE_DUMPCORE_NONE, new Uint8Array(0)),
    note(XEN_ELFNOTE_DUMPCORE_HEADER, header),
    note(XEN_ELFNOTE_DUMPCORE_XEN_VERSION, version),
    note(XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION, format),
  ]);
  const prstatus = Buffer.concat(contexts);
  const pfns = Buffer.alloc(nrPages * 8);
  for (let p = 0; p < nrPages; p++) pfns.writeUInt32LE(p, p * 8);

  // Sections, in file order after the ELF header and the section headers.
  const sections: Array<{
    name: string;
    type: number;
    data?: Uint8Array;
    size: number;
    align: number;
    entsize: number;
  }> = [
    { name: "", type: 0, size: 0, align: 0, entsize: 0 },
    { name: ".shstrtab", type: SHT_STRTAB, size: 0, align: 1, entsize: 0 },
    { name: ".note.Xen", type: SHT_NOTE, data: notes, size: notes.length, align: 4, entsize: 0 },
    {
      name: ".xen_prstatus",
      type: SHT_PROGBITS,
      data: prstatus,
      size: prstatus.length,
      align: 8,
      entsize: vcpu_guest_context.size,
    },
    ...(sharedInfo
      ? [
          {
            name: ".xen_shared_info",
            type: SHT_PROGBITS,
            data: sharedInfo,
            size: sharedInfo.length,
            align: 8,
            entsize: 0,
          },
        ]
      : []),
    { name: ".xen_pfn", type: SHT_PROGBITS, data: pfns, size: pfns.length, align: 8, entsize: 8 },
    {
      name: ".xen_pages",
      type: SHT_PROGBITS,
      size: nrPages * PAGE_SIZE,
      align: PAGE_SIZE,
      entsize: PAGE_SIZE,
    },
  ];
  const names: number[] = [];
  let text = "";
  for (const s of sections) {
    names.push(Buffer.byteLength(text));
    text += `${s.name}\0`;
  }
  const strtab = Buffer.from(text);
  sections[1]!.data = strtab;
  sections[1]!.size = strtab.length;
  const offsets: number[] = [];
  let off = EHDR_SIZE + SHDR_SIZE * sections.length;
  for (const s of sections) {
    if (s.align > 1) off = Math.ceil(off / s.align) * s.align;
    offsets.push(s.type === 0 ? 0 : off);
    off += s.size;
  }

  const head = Buffer.alloc(EHDR_SIZE + SHDR_SIZE * sections.length);
  head.write("\x7fELF", 0, "latin1");
  head[4] = 2; // ELFCLASS64
  head[5] = 1; // little-endian
  head[6] = 1; // EV_CURRENT
  head.writeUInt16LE(ET_CORE, 16);
  head.writeUInt16LE(E_MACHINE[arch] ?? 0, 18);
  head.writeUInt32LE(1, 20);
  head.writeBigUInt64LE(BigInt(EHDR_SIZE), 40); // e_shoff
  head.writeUInt16LE(EHDR_SIZE, 52);
  head.writeUInt16LE(SHDR_SIZE, 58);
  head.writeUInt16LE(sections.length, 60);
  head.writeUInt16LE(1, 62); // e_shstrndx
  sections.forEach((s, i) => {
    const h = EHDR_SIZE + i * SHDR_SIZE;
    head.writeUInt32LE(names[i]!, h);
    head.writeUInt32LE(s.type, h + 4);
    head.writeBigUInt64LE(BigInt(offsets[i]!), h + 24);
    head.writeBigUInt64LE(BigInt(s.size), h + 32);
    head.writeBigUInt64LE(BigInt(s.align), h + 48);
    head.writeBigUInt64LE(BigInt(s.entsize), h + 56);
  });

  // A FIFO or device must not hold the host: opened without blocking, and a
  // regular file only (created 0600, as libxc creates it).
  let fh;
  try {
    fh = await open(
      path,
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NONBLOCK,
      0o600,
    );
  } catch (e) {
    throw new Error(`cannot open ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    if (!fstatSync(fh.fd).isFile()) throw new Error(`${path} is not a regular file`);
    await fh.write(head, 0, head.length, 0);
    for (let i = 0; i < sections.length; i++) {
      const s = sections[i]!;
      if (s.data) await fh.write(s.data, 0, s.data.length, offsets[i]!);
    }
    const pagesAt = offsets[sections.length - 1]!;
    const bytes = nrPages * PAGE_SIZE;
    for (let o = 0; o < bytes; o += CHUNK) {
      const n = Math.min(CHUNK, bytes - o);
      // A page the guest's memory does not reach (it cannot shrink) reads as zero.
      const piece = o + n <= mem.length ? mem.subarray(o, o + n) : new Uint8Array(n);
      if (o < mem.length && o + n > mem.length) piece.set(mem.subarray(o, mem.length));
      await fh.write(piece, 0, n, pagesAt + o);
    }
  } catch (e) {
    throw new Error(`writing ${path}: ${(e as Error).message}`, { cause: e });
  } finally {
    await fh.close();
  }
  return nrPages;
}
