/**
 * What `xl <command> -h` prints for each command: its arguments, as Xen's
 * xl_cmdtable.c has them, and the options tsxen's xl takes, described in
 * tsxen's words. A test checks that every command has its entry and that
 * every option a command parses is described.
 */

/** One command's usage line (after `xl <command>`) and option lines. */
export interface CommandUsage {
  readonly usage: string;
  readonly options?: ReadonlyArray<readonly [string, string]>;
}

const HELP: readonly [string, string] = ["-h", "Print this help."];

export const USAGE: Record<string, CommandUsage> = {
  create: {
    usage: "<ConfigFile> [options] [vars]",
    options: [
      HELP,
      ["-p", "Leave the domain paused after it is created."],
      ["-c", "Attach to the domain's console after it is created."],
      ["-F", "Stay in the foreground until the domain is gone."],
      ["-q, --quiet", "Print no 'Parsing config' line."],
      ["-n, --dry-run", "Parse the config, print the domain config libxl would get, make nothing."],
      ["-f FILE, --defconfig=FILE", "Use FILE as the config file."],
      ["-V, --vnc", "Accepted for Xen's sake; wasm32 domains have no VNC."],
      ["key=value", "Set a config key after the file's settings, as a line of it."],
    ],
  },
  list: {
    usage: "[options] [Domain]",
    options: [
      HELP,
      ["-l, --long", "Print each domain's libxl config as JSON."],
      ["-v, --verbose", "Add the UUID and the shutdown reason code."],
    ],
  },
  destroy: {
    usage: "[options] <Domain>",
    options: [HELP, ["-f", "Accepted as Xen's; domain 0 is never destroyed by tsxen."]],
  },
  shutdown: {
    usage: "[options] <-a|Domain>",
    options: [
      HELP,
      ["-a, --all", "Shut down every domain but domain 0."],
      ["-w, --wait", "Wait, as long as it takes, until each domain has shut down."],
      ["-F", "Accepted as Xen's (its fallback for guests without PV drivers)."],
    ],
  },
  reboot: {
    usage: "[options] <-a|Domain>",
    options: [
      HELP,
      ["-a, --all", "Reboot every domain but domain 0."],
      ["-w, --wait", "Wait until each domain has shut down for its reboot."],
      ["-F", "Accepted as Xen's (its fallback for guests without PV drivers)."],
    ],
  },
  pause: { usage: "<Domain>" },
  trigger: { usage: "<Domain> <nmi|reset|init|power|sleep|s3resume> [<VCPU>]" },
  sysrq: { usage: "<Domain> <letter>\nWrites the letter to the guest's control/sysrq." },
  save: {
    usage: "[options] <Domain> <CheckpointFile>",
    options: [
      HELP,
      ["-c", "Leave domain running after creating the snapshot."],
      ["-p", "Leave domain paused after creating the snapshot."],
    ],
  },
  restore: {
    usage: "[options] <CheckpointFile>",
    options: [
      HELP,
      ["-p", "Do not unpause domain after restoring it."],
      ["-e", "Do not wait in the background for the death of the domain."],
      ["-d", "Enable debug messages."],
      ["-V, --vncviewer", "Accepted as Xen's (no VNC)."],
      ["-c", "Connect to the console after the domain is restored."],
    ],
  },
  migrate: {
    usage: "[options] <Domain> <host>",
    options: [
      HELP,
      [
        "-s <sshcommand>",
        "Use <sshcommand> instead of ssh. String will be passed to sh. If empty, run <host> instead of ssh <host> xl migrate-receive [-d -e]",
      ],
      ["-e", "Do not wait in the background (on <host>) for the death of the domain."],
      ["-p", "Do not unpause domain after migrating it."],
      ["-F", "Accepted as Xen's (do not daemonize on <host>)."],
      ["--debug", "Send the memory a second time after the last round; the receiver checks it."],
      ["--live", "Ignored, for compatibility with xm."],
      [
        "--max-iters N",
        "tsxen: at most N rounds of dirty pages while the domain runs (libxl's max_iters; 5).",
      ],
      [
        "--min-remaining N",
        "tsxen: stop the rounds once fewer than N pages were dirtied (libxl's min_remaining; 50).",
      ],
    ],
  },
  "migrate-receive": {
    usage: "[options]",
    options: [
      HELP,
      ["-d", "Debug messages: libxc's steps, and the pages --debug sent again, checked."],
      ["-e", "Accepted as Xen's (do not wait for the death of the domain)."],
      ["-F", "Accepted as Xen's (do not daemonize)."],
      ["-p", "Do not unpause the domain after receiving it."],
    ],
  },
  "config-update": {
    usage: "<Domain> <ConfigFile> [options] [vars]",
    options: [
      HELP,
      ["-f FILE, --defconfig=FILE", "Use FILE as the config file."],
      ["-d", "Accepted as Xen's (debug messages)."],
    ],
  },
  "channel-list": { usage: "<Domain(s)>" },
  "vm-list": { usage: "\nLists the guests (not Dom0): UUID, ID and name." },
  "dump-core": {
    usage:
      "<Domain> <filename>\nWrites the domain's memory and vCPU state as an ELF core in Xen's dump-core format (readelf -a reads it).",
  },
  unpause: { usage: "<Domain>" },
  console: {
    usage: "[options] <Domain>\nAttach to the domain's console; Ctrl-] detaches.",
    options: [
      HELP,
      ["-t <type>", "Console type: pv (the default) or serial."],
      ["-n <number>", "Console number (tsxen's guests have console 0)."],
    ],
  },
  info: { usage: "[-n|--numa]", options: [HELP, ["-n, --numa", "Accepted as Xen's."]] },
  dmesg: { usage: "[-c]", options: [HELP, ["-c", "Clear the ring after printing it."]] },
  "debug-keys": { usage: "<Keys>" },
  domid: { usage: "<DomainName>" },
  domname: { usage: "<DomainId>" },
  rename: { usage: "<Domain> <NewDomainName>" },
  "mem-set": {
    usage: "<Domain> <MemMB['b'[bytes]|'k'[KB]|'g'[GB]|'m'[MB]]>",
  },
  "mem-max": {
    usage: "<Domain> <MemMB['b'[bytes]|'k'[KB]|'g'[GB]|'m'[MB]]>",
  },
  "vcpu-list": { usage: "[Domain, ...]" },
  "vcpu-set": {
    usage: "[option] <Domain> <vCPUs>",
    options: [HELP, ["-i, --ignore-host", "Allow more vCPUs than the host has pCPUs."]],
  },
  "vcpu-pin": {
    usage: "[option] <Domain> <VCPU|all> <Hard affinity|-|all> <Soft affinity|-|all>",
    options: [
      HELP,
      ["-f, --force", "Accepted as Xen's."],
      ["-i, --ignore-global-affinity-masks", "Accepted as Xen's."],
    ],
  },
  "sched-credit": {
    usage: "[-d <Domain> [-w[=WEIGHT]|-c[=CAP]]]",
    options: [
      HELP,
      ["-d DOMAIN, --domain=DOMAIN", "The domain to show or change."],
      ["-w WEIGHT, --weight=WEIGHT", "Its weight, 1 to 65535 (default 256)."],
      ["-c CAP, --cap=CAP", "Its cap, in percent of one pCPU (0: none)."],
    ],
  },
  uptime: { usage: "[-s] [Domain]", options: [HELP, ["-s", "Short output: no header."]] },
  top: {
    usage: "[options]",
    options: [
      HELP,
      ["-b, --batch", "Print the table repeatedly instead of redrawing a screen."],
      ["-i N, --iterations=N", "Stop after N tables."],
      ["-d S, --delay=S", "Seconds between two tables (default 3)."],
      ["-n, --networks", "Add each domain's networks: bytes, packets, errors, drops."],
      ["-x, --vbds", "Add each domain's block devices: requests and sectors."],
    ],
  },
  "block-attach": { usage: "<Domain> <disk-spec-component(s)>..." },
  "block-detach": {
    usage: "[option] <Domain> <DevId>",
    options: [
      HELP,
      ["-f, --force", "Accepted as Xen's; the device goes after its timeout anyway."],
    ],
  },
  "block-list": { usage: "<Domain(s)>" },
  "network-attach": { usage: "<Domain> [mac=<mac>] [bridge=<bridge>] [devid=<N>]" },
  "network-detach": { usage: "<Domain> <DevId|mac>" },
  "network-list": { usage: "<Domain(s)>" },
  help: { usage: "[-v] [subcommand]" },
};

/** The text `xl <cmd> -h` prints, Xen's layout: usage, what it does, options. */
export function usageText(cmd: string, summary: string): string {
  const u = USAGE[cmd];
  if (!u) return `Usage: xl ${cmd}\n\n${summary}.\n`;
  const [first, ...more] = u.usage.split("\n");
  let text = `Usage: xl [-v] ${cmd} ${first}\n\n${summary}.\n`;
  for (const line of more) text += `${line}\n`;
  if (u.options) {
    const width = Math.max(...u.options.map(([o]) => o.length)) + 2;
    text += `\nOptions:\n\n${u.options.map(([o, d]) => `${o.padEnd(width)}${d}`).join("\n")}\n`;
  }
  return text;
}
