/**
 * A domain's configuration as libxl's JSON has it (libxl_domain_config:
 * c_info, b_info, disks, the on_* actions), for what tsxen's domains have:
 * what `xl list -l` prints for a running domain and `xl -N create` for one
 * that would be made.
 */
import type { XlDomainConfig } from "./config.js";
import { parseP9Spec } from "./p9.js";
import { parseDiskSpec } from "./disk.js";

/** What a running domain has that its config does not say (xenstore's memory and vCPU nodes). */
export interface LiveSettings {
  readonly targetKiB: number;
  readonly maxKiB: number;
  readonly online: number[];
}

/** libxl_domain_config's JSON for `c`; without `live`, as the config asks. */
export function configJson(
  c: XlDomainConfig,
  uuid: string | undefined,
  live?: LiveSettings,
): Record<string, unknown> {
  return {
    c_info: { type: c.type, name: c.name, uuid },
    b_info: {
      max_vcpus: c.maxvcpus,
      avail_vcpus: live?.online ?? Array.from({ length: c.vcpus }, (_, i) => i),
      max_memkb: live?.maxKiB ?? c.maxmem * 1024,
      target_memkb: live?.targetKiB ?? c.memory * 1024,
      sched_params: { weight: c.weight, cap: c.cap },
      event_channels: c.maxEvtchnPort,
      max_grant_frames: c.maxGrantFrames,
      max_maptrack_frames: c.maxMaptrackFrames,
      kernel: c.kernel,
      cmdline: c.cmdline,
      // libxl's defbool, written as libxl writes one that was set.
      ...(c.nomigrate !== undefined ? { disable_migrate: c.nomigrate ? "True" : "False" } : {}),
      ...(c.type === "hvm"
        ? {
            device_model_version: "qemu_xen",
            rtc_timeoffset: c.rtcTimeoffset,
            type_hvm: { serial: c.serial },
          }
        : {}),
    },
    p9s: c.p9s.map((spec) => {
      const p = parseP9Spec(spec);
      return { tag: p.tag, path: p.path, security_model: p.securityModel };
    }),
    disks: c.disks.map((spec) => {
      const d = parseDiskSpec(spec);
      return {
        pdev_path: d.target,
        vdev: d.vdev,
        format: d.format,
        readwrite: d.readonly ? 0 : 1,
        is_cdrom: d.devtype === "cdrom" ? 1 : 0,
      };
    }),
    on_poweroff: c.onPoweroff,
    on_reboot: c.onReboot,
    on_crash: c.onCrash,
  };
}
