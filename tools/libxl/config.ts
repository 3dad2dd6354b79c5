/**
 * A domain's configuration from xl.cfg settings (Xen's xl_parse.c into
 * libxl_domain_config; xen-doc `man/xl.cfg.5`), for the options tsxen's
 * guests have: name, type, kernel, memory, maxmem, vcpus, maxvcpus, extra,
 * cmdline, uuid, the on_* actions, cpu_weight, cap, max_event_channels,
 * max_grant_frames, max_maptrack_frames, and disk and vif (kept as their
 * spec strings for the split drivers). Other options are reported as
 * ignored; a wrong type or value is an error naming the option and its place.
 */
import { isAbsolute, resolve } from "node:path";
import { CfgError, type CfgSetting, type CfgValue } from "../libxlu/cfg.js";
import { parseDiskSpec } from "./disk.js";
import { parseNicSpec } from "./nic.js";

/** What to do when a domain powers off, reboots or crashes (xl.cfg's on_*). */
export const ACTIONS = [
  "destroy",
  "restart",
  "rename-restart",
  "preserve",
  "coredump-destroy",
  "coredump-restart",
  "soft-reset",
] as const;
export type Action = (typeof ACTIONS)[number];

/** libxl_domain_config, as far as tsxen's guests use it. */
export interface XlDomainConfig {
  name: string;
  type: "pv";
  /** The guest's .wasm, resolved against the config file's directory. */
  kernel: string;
  /** MiB. */
  memory: number;
  maxmem: number;
  vcpus: number;
  maxvcpus: number;
  /** The guest's command line: `cmdline`, else `extra`. */
  cmdline: string;
  uuid: string | undefined;
  onPoweroff: Action;
  onReboot: Action;
  onCrash: Action;
  weight: number;
  cap: number;
  maxEvtchnPort: number;
  maxGrantFrames: number;
  maxMaptrackFrames: number;
  disks: string[];
  vifs: string[];
}

/** The result: the config, and what xl would warn about. */
export interface ParsedConfig {
  config: XlDomainConfig;
  warnings: string[];
}

const KNOWN = new Set([
  "name",
  "type",
  "builder",
  "kernel",
  "memory",
  "maxmem",
  "vcpus",
  "maxvcpus",
  "extra",
  "cmdline",
  "uuid",
  "on_poweroff",
  "on_reboot",
  "on_crash",
  "cpu_weight",
  "cap",
  "max_event_channels",
  "max_grant_frames",
  "max_maptrack_frames",
  "disk",
  "vif",
]);

/**
 * Builds the domain config from `settings` of config file `file`; relative
 * kernel paths are taken from the file's directory `dir`. Throws CfgError.
 */
export function domainConfig(
  settings: Map<string, CfgSetting>,
  file: string,
  dir: string,
): ParsedConfig {
  const warnings: string[] = [];
  const err = (s: CfgSetting | CfgValue, key: string, what: string): never => {
    throw new CfgError(file, s.line, s.col, `'${key}' ${what}`);
  };
  const str = (key: string): string | undefined => {
    const s = settings.get(key);
    if (!s) return undefined;
    if (s.value.kind !== "string")
      return err(s, key, `must be a quoted string, found a ${s.value.kind}`);
    return s.value.value;
  };
  const num = (key: string, min: number, max = 2 ** 31 - 1): number | undefined => {
    const s = settings.get(key);
    if (!s) return undefined;
    if (s.value.kind !== "number") return err(s, key, `must be a number, found a ${s.value.kind}`);
    if (s.value.value < min || s.value.value > max)
      return err(s, key, `must be between ${min} and ${max}, found ${s.value.value}`);
    return s.value.value;
  };
  const strings = (key: string): string[] => {
    const s = settings.get(key);
    if (!s) return [];
    if (s.value.kind !== "list")
      return err(s, key, `must be a [list] of strings, found a ${s.value.kind}`);
    return s.value.items.map((v) =>
      v.kind === "string"
        ? v.value
        : err(v, key, `entries must be quoted strings, found a ${v.kind}`),
    );
  };
  const action = (key: string, dflt: Action): Action => {
    const v = str(key);
    if (v === undefined) return dflt;
    if (!(ACTIONS as readonly string[]).includes(v))
      err(settings.get(key)!, key, `must be one of ${ACTIONS.join(", ")}, found '${v}'`);
    return v as Action;
  };
  for (const s of settings.values()) {
    if (!KNOWN.has(s.key))
      warnings.push(`${file}:${s.line}: ignoring option '${s.key}', which tsxen does not know`);
  }
  const name = str("name");
  if (name === undefined || name === "") throw new CfgError(file, 1, 1, "'name' is mandatory");
  const type = str("type") ?? (str("builder") === "hvm" ? "hvm" : "pv");
  if (type !== "pv")
    err(
      settings.get("type") ?? settings.get("builder")!,
      "type",
      `'${type}' is not available on wasm32: tsxen runs PV guests`,
    );
  const kernel = str("kernel");
  if (kernel === undefined)
    throw new CfgError(file, 1, 1, "'kernel' is mandatory: the guest's .wasm");
  const memory = num("memory", 1) ?? 128;
  const maxmem = num("maxmem", 1) ?? memory;
  if (maxmem < memory)
    err(settings.get("maxmem")!, "maxmem", `(${maxmem}) is less than memory (${memory})`);
  const vcpus = num("vcpus", 1) ?? 1;
  const maxvcpus = num("maxvcpus", 1) ?? vcpus;
  if (maxvcpus < vcpus)
    err(settings.get("maxvcpus")!, "maxvcpus", `(${maxvcpus}) is less than vcpus (${vcpus})`);
  const disks = strings("disk");
  const diskSetting = settings.get("disk");
  for (const [i, d] of disks.entries()) {
    try {
      parseDiskSpec(d);
    } catch (e) {
      const v = diskSetting!.value.kind === "list" ? diskSetting!.value.items[i]! : diskSetting!;
      throw new CfgError(file, v.line, v.col, (e as Error).message);
    }
  }
  const vifs = strings("vif");
  const vifSetting = settings.get("vif");
  for (const [i, v] of vifs.entries()) {
    try {
      parseNicSpec(v);
    } catch (e) {
      const at = vifSetting!.value.kind === "list" ? vifSetting!.value.items[i]! : vifSetting!;
      throw new CfgError(file, at.line, at.col, (e as Error).message);
    }
  }
  const uuid = str("uuid");
  if (
    uuid !== undefined &&
    !/^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/.test(uuid)
  ) {
    err(settings.get("uuid")!, "uuid", `'${uuid}' is not a UUID`);
  }
  return {
    config: {
      name,
      type: "pv",
      kernel: isAbsolute(kernel) ? kernel : resolve(dir, kernel),
      memory,
      maxmem,
      vcpus,
      maxvcpus,
      cmdline: str("cmdline") ?? str("extra") ?? "",
      uuid,
      onPoweroff: action("on_poweroff", "destroy"),
      onReboot: action("on_reboot", "restart"),
      onCrash: action("on_crash", "destroy"),
      weight: num("cpu_weight", 1, 65535) ?? 256,
      cap: num("cap", 0, 100 * 64) ?? 0,
      // Xen's libxl passes max_event_channels to DOMCTL_set_max_evtchn as the
      // highest port; its default is 1023.
      maxEvtchnPort: num("max_event_channels", 1) ?? 1023,
      maxGrantFrames: num("max_grant_frames", 1) ?? 64,
      maxMaptrackFrames: num("max_maptrack_frames", 0) ?? 1024,
      disks,
      vifs,
    },
    warnings,
  };
}

/** A domain name libxl accepts: no '/', no leading space, at most 64 bytes. */
export function isValidDomainName(name: string): boolean {
  return /^[^/\s][^/]*$/.test(name) && Buffer.byteLength(name) <= 64;
}

/**
 * Checks a config that arrived from outside (the libxl socket) field by
 * field; returns it typed, or throws naming the first wrong field.
 */
export function checkDomainConfig(x: unknown): XlDomainConfig {
  if (typeof x !== "object" || x === null) throw new Error("libxl: create needs a domain config");
  const c = x as Record<string, unknown>;
  const fail = (k: string, what: string): never => {
    throw new Error(`libxl: config field '${k}' ${what}, got ${JSON.stringify(c[k])}`);
  };
  for (const k of ["name", "kernel", "cmdline"])
    if (typeof c[k] !== "string") fail(k, "must be a string");
  if (!isValidDomainName(c.name as string)) fail("name", "is not a valid domain name");
  if (c.type !== "pv") fail("type", "must be 'pv'");
  for (const k of [
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "weight",
    "cap",
    "maxEvtchnPort",
    "maxGrantFrames",
    "maxMaptrackFrames",
  ]) {
    if (!Number.isSafeInteger(c[k]) || (c[k] as number) < 0)
      fail(k, "must be a non-negative integer");
  }
  for (const k of ["onPoweroff", "onReboot", "onCrash"]) {
    if (!(ACTIONS as readonly unknown[]).includes(c[k]))
      fail(k, `must be one of ${ACTIONS.join(", ")}`);
  }
  if (c.uuid !== undefined && (typeof c.uuid !== "string" || !/^[0-9a-f-]{32,36}$/i.test(c.uuid))) {
    fail("uuid", "must be a UUID");
  }
  for (const k of ["disks", "vifs"]) {
    if (!Array.isArray(c[k]) || !(c[k] as unknown[]).every((s) => typeof s === "string")) {
      fail(k, "must be a list of strings");
    }
  }
  return c as unknown as XlDomainConfig;
}

/**
 * A domain config with xl's defaults for everything not given (what an
 * xl.cfg with only these settings would give): for tests, benchmarks and
 * programs that build domains without a file.
 */
export function xlDomainConfig(
  c: Pick<XlDomainConfig, "name" | "kernel"> & Partial<XlDomainConfig>,
): XlDomainConfig {
  const memory = c.memory ?? 128;
  const vcpus = c.vcpus ?? 1;
  return {
    type: "pv",
    maxmem: memory,
    maxvcpus: vcpus,
    cmdline: "",
    uuid: undefined,
    onPoweroff: "destroy",
    onReboot: "restart",
    onCrash: "destroy",
    weight: 256,
    cap: 0,
    maxEvtchnPort: 1023,
    maxGrantFrames: 64,
    maxMaptrackFrames: 1024,
    disks: [],
    vifs: [],
    ...c,
    memory,
    vcpus,
  };
}
