/**
 * Disk specifications as xen-doc `man/xl-disk-configuration.5` defines them
 * (libxlu_disk.c): comma-separated `key=value` settings, or positional
 * `target,format,vdev,access` (a later positional may be left out), with
 * `target` last if it contains commas. Keys: target, format (raw or
 * qcow2), vdev (xvdX, hdX, sdX or a number), access
 * (r/ro/w/rw), devtype (disk; cdrom), backendtype (phy, qdisk, tap: all
 * served by tsxen's blkback), discard / no-discard. The legacy
 * `[phy:|file:|tap:aio:]target,vdev,access` form is accepted too.
 */

export interface DiskSpec {
  target: string;
  format: "raw" | "qcow2";
  vdev: string;
  /** The xenstore device id of `vdev` (xen-doc `man/xen-vbd-interface.7`). */
  devid: number;
  readonly: boolean;
  devtype: "disk" | "cdrom";
  discard: boolean;
}

/** The vbd number of a vdev name (xen-vbd-interface(7)), or undefined. */
export function vdevToDevid(vdev: string): number | undefined {
  const letters = (s: string): number => {
    let n = 0;
    for (const ch of s) n = n * 26 + (ch.charCodeAt(0) - 96);
    return n - 1;
  };
  let m = /^xvd([a-z]+)(\d*)$/.exec(vdev);
  if (m) {
    const disk = letters(m[1]!);
    const part = m[2] === "" ? 0 : Number(m[2]);
    if (disk < 16 && part < 16) return (202 << 8) | (disk << 4) | part;
    if (part < 256) return (1 << 28) | (disk << 8) | part;
    return undefined;
  }
  m = /^hd([a-d])(\d*)$/.exec(vdev);
  if (m) {
    const disk = letters(m[1]!);
    const part = m[2] === "" ? 0 : Number(m[2]);
    if (part > 63) return undefined;
    return ((disk < 2 ? 3 : 22) << 8) | ((disk % 2) << 6) | part;
  }
  m = /^sd([a-p])(\d*)$/.exec(vdev);
  if (m) {
    const part = m[2] === "" ? 0 : Number(m[2]);
    if (part > 15) return undefined;
    return (8 << 8) | (letters(m[1]!) << 4) | part;
  }
  if (/^\d+$/.test(vdev)) return Number(vdev);
  return undefined;
}

/** Parses one disk spec; throws an Error naming the part that is wrong. */
export function parseDiskSpec(spec: string): DiskSpec {
  const s: Partial<Record<string, string>> = {};
  const positional = ["target", "format", "vdev", "access"];
  let pos = 0;
  const parts = spec.split(",").map((p) => p.trim());
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    const eq = p.indexOf("=");
    if (eq > 0 && /^[a-z-]+$/.test(p.slice(0, eq))) {
      const k = p.slice(0, eq);
      let v = p.slice(eq + 1);
      // target= takes the rest of the spec, commas and all.
      if (k === "target") {
        v = parts
          .slice(i)
          .join(",")
          .slice(eq + 1);
        i = parts.length;
      }
      s[k] = v;
      continue;
    }
    if (p === "discard" || p === "no-discard") {
      s.discard = p === "discard" ? "1" : "0";
      continue;
    }
    if (p === "cdrom") {
      s.devtype = "cdrom";
      continue;
    }
    if (p === "") {
      pos++;
      continue;
    }
    if (pos >= positional.length) throw new Error(`disk spec '${spec}': unexpected '${p}'`);
    // Positional target last: with all four, the target may hold commas.
    s[positional[pos++]!] = p;
  }
  // The legacy three-part form, "[prefix:]target,vdev,access": the second
  // part is a disk name rather than a format.
  if (
    s.format !== undefined &&
    s.access === undefined &&
    !["raw", "qcow2"].includes(s.format.toLowerCase()) &&
    vdevToDevid(s.format) !== undefined
  ) {
    s.access = s.vdev;
    s.vdev = s.format;
    s.format = undefined;
  }
  let target = s.target;
  if (target === undefined || target === "") throw new Error(`disk spec '${spec}': no target`);
  // Legacy target prefixes: phy:, file:, tap:aio:, aio:, and a format.
  const prefix = /^(?:(phy|file|tap2?|aio|raw|qcow2):)+/.exec(target);
  if (prefix) {
    if (prefix[0].includes("qcow2:")) s.format = s.format ?? "qcow2";
    target = target.slice(prefix[0].length);
  }
  const format = (s.format ?? "raw").toLowerCase();
  if (format !== "raw" && format !== "qcow2") {
    throw new Error(`disk spec '${spec}': format '${format}' is not raw or qcow2`);
  }
  const vdev = s.vdev;
  if (vdev === undefined) throw new Error(`disk spec '${spec}': no vdev`);
  const devid = vdevToDevid(vdev);
  if (devid === undefined)
    throw new Error(`disk spec '${spec}': vdev '${vdev}' is not a disk name`);
  const access = s.access ?? "rw";
  if (!["r", "ro", "w", "rw"].includes(access)) {
    throw new Error(`disk spec '${spec}': access '${access}' is not r, ro, w or rw`);
  }
  const devtype = s.devtype ?? "disk";
  if (devtype !== "disk" && devtype !== "cdrom") {
    throw new Error(`disk spec '${spec}': devtype '${devtype}' is not disk or cdrom`);
  }
  for (const k of Object.keys(s)) {
    if (
      ![
        "target",
        "format",
        "vdev",
        "access",
        "devtype",
        "discard",
        "backendtype",
        "backend",
        "script",
      ].includes(k)
    ) {
      throw new Error(`disk spec '${spec}': unknown key '${k}'`);
    }
  }
  return {
    target,
    format: format as "raw" | "qcow2",
    vdev,
    devid,
    readonly: access === "r" || access === "ro" || devtype === "cdrom",
    devtype,
    discard: s.discard !== "0",
  };
}
