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
import { parseP9Spec } from "./p9.js";
import { channelSpecString, parseChannelSpec } from "./channel.js";

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
  /** "pv": a mini-os kernel; "hvm": an unmodified WASI program with a device model. */
  type: "pv" | "hvm";
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
  /** 9pfs shares (p9=), as spec strings; paths resolved against the config's directory. */
  p9s: string[];
  /** PV channels (channel=), as spec strings; socket paths resolved against the config's directory. */
  channels?: string[];
  /** HVM: the emulated serial port (serial=): "pty" or "none". */
  serial: "pty" | "none";
  /** HVM: seconds added to the host's clock for the guest (rtc_timeoffset=). */
  rtcTimeoffset: number;
  /** HVM: the program's environment (env=, tsxen's: Xen has no such key). */
  env: string[];
  /**
   * nomigrate= as given (undefined: not set). An HVM guest is saveable only
   * with nomigrate=0 (docs/hvm.md): `migratable()` says which.
   */
  nomigrate?: boolean;
}

/**
 * Whether a domain may be saved and migrated: Xen's default for PV guests
 * (nomigrate changes nothing for them on wasm32); an HVM guest only when
 * its config says nomigrate=0, since its program must then be made
 * saveable, which costs (docs/hvm.md, "Saving an HVM guest").
 */
export function migratable(c: Pick<XlDomainConfig, "type" | "nomigrate">): boolean {
  return c.type === "hvm" ? c.nomigrate === false : true;
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
  "p9",
  "channel",
  "serial",
  "rtc_timeoffset",
  "env",
  "nomigrate",
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
  if (type !== "pv" && type !== "hvm")
    err(
      settings.get("type") ?? settings.get("builder")!,
      "type",
      `'${type}' is not available on wasm32: tsxen runs 'pv' and 'hvm' guests`,
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
  if (type === "hvm") {
    // WASI preview1 has no threads: a WASI program runs on one CPU.
    if (vcpus !== 1 || maxvcpus !== 1)
      err(
        settings.get("vcpus") ?? settings.get("maxvcpus")!,
        "vcpus",
        "must be 1 for an HVM guest on wasm32 (WASI preview1 programs have one thread)",
      );
    if (maxmem !== memory)
      warnings.push(
        `${file}:${settings.get("maxmem")!.line}: ignoring option 'maxmem' for an HVM guest: its memory is populated whole at creation (no populate-on-demand on wasm32)`,
      );
    const vif = settings.get("vif");
    if (vif && strings("vif").length > 0)
      err(
        vif,
        "vif",
        "an HVM guest on wasm32 has no emulated network card (WASI preview1 has no sockets)",
      );
  }
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
  const p9s = strings("p9");
  const p9Setting = settings.get("p9");
  for (const [i, spec] of p9s.entries()) {
    try {
      parseP9Spec(spec, dir);
    } catch (e) {
      const at = p9Setting!.value.kind === "list" ? p9Setting!.value.items[i]! : p9Setting!;
      throw new CfgError(file, at.line, at.col, (e as Error).message);
    }
  }
  if (type === "pv" && p9s.length > 0)
    err(
      p9Setting!,
      "p9",
      'needs a 9pfs frontend, which tsxen\'s mini-os does not have yet: use type="hvm"',
    );
  const channels = strings("channel");
  const channelSetting = settings.get("channel");
  const parsedChannels = channels.map((spec, i) => {
    try {
      return parseChannelSpec(spec, dir);
    } catch (e) {
      const at =
        channelSetting!.value.kind === "list" ? channelSetting!.value.items[i]! : channelSetting!;
      throw new CfgError(file, at.line, at.col, (e as Error).message);
    }
  });
  if (type === "hvm" && channels.length > 0)
    err(
      channelSetting!,
      "channel",
      "needs a PV console frontend, which a WASI program does not have",
    );
  const serialSetting = settings.get("serial");
  let serial: "pty" | "none" = "pty";
  if (serialSetting) {
    const v = serialSetting.value.kind === "list" ? strings("serial") : [str("serial")!];
    if (v.length !== 1 || (v[0] !== "pty" && v[0] !== "none"))
      err(
        serialSetting,
        "serial",
        `must be "pty" or "none" (the one serial port tsxen emulates), found ${JSON.stringify(v)}`,
      );
    serial = v[0] as "pty" | "none";
    if (type === "pv")
      warnings.push(
        `${file}:${serialSetting.line}: ignoring option 'serial' for a PV guest (it has no emulated serial port)`,
      );
  }
  const env = strings("env");
  for (const e of env)
    if (!e.includes("="))
      err(settings.get("env")!, "env", `entries must be NAME=VALUE, found '${e}'`);
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
      type: type as "pv" | "hvm",
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
      p9s: p9s.map((spec) => {
        const s = parseP9Spec(spec, dir);
        return `tag=${s.tag},security_model=none,path=${s.path}${s.readonly ? ",readonly" : ""}`;
      }),
      channels: parsedChannels.map(channelSpecString),
      serial,
      rtcTimeoffset: num("rtc_timeoffset", -(2 ** 31)) ?? 0,
      env,
      ...(settings.has("nomigrate") ? { nomigrate: num("nomigrate", 0, 1) === 1 } : {}),
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
  if (c.type !== "pv" && c.type !== "hvm") fail("type", "must be 'pv' or 'hvm'");
  if (c.serial !== "pty" && c.serial !== "none") fail("serial", "must be 'pty' or 'none'");
  if (typeof c.rtcTimeoffset !== "number" || !Number.isSafeInteger(c.rtcTimeoffset))
    fail("rtcTimeoffset", "must be an integer");
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
  if (c.nomigrate !== undefined && typeof c.nomigrate !== "boolean")
    fail("nomigrate", "must be a boolean");
  if (c.uuid !== undefined && (typeof c.uuid !== "string" || !/^[0-9a-f-]{32,36}$/i.test(c.uuid))) {
    fail("uuid", "must be a UUID");
  }
  for (const k of ["disks", "vifs", "p9s", "env", "channels"]) {
    if (k === "channels" && c[k] === undefined) continue;
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
    p9s: [],
    serial: "pty",
    rtcTimeoffset: 0,
    env: [],
    ...c,
    memory,
    vcpus,
  };
}

/**
 * The words of a command line, as a shell splits them for argv: separated
 * by blanks, with '...' and "..." quoting (a backslash escapes the next
 * character outside single quotes). An unterminated quote runs to the end.
 */
export function splitCmdline(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === "\\" && quote === '"' && i + 1 < line.length) cur += line[++i];
      else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === "\\" && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}
