/** xl.cfg settings into a domain configuration: defaults, checks, warnings. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCfg } from "../libxlu/cfg.js";
import { domainConfig, splitCmdline } from "./config.js";
import { p9GuestPath, parseP9Spec } from "./p9.js";

const build = (text: string) => domainConfig(parseCfg(text, "g.cfg"), "g.cfg", "/etc/tsxen");

test("a minimal config gets xl's defaults", () => {
  const { config, warnings } = build('name = "g"\nkernel = "g.wasm"\n');
  assert.deepEqual(warnings, []);
  assert.equal(config.kernel, "/etc/tsxen/g.wasm");
  assert.deepEqual(
    [config.memory, config.maxmem, config.vcpus, config.maxvcpus, config.cmdline],
    [128, 128, 1, 1, ""],
  );
  assert.deepEqual(
    [config.onPoweroff, config.onReboot, config.onCrash],
    ["destroy", "restart", "destroy"],
  );
  assert.deepEqual(
    [config.maxEvtchnPort, config.maxGrantFrames, config.maxMaptrackFrames],
    [1023, 64, 1024],
  );
});

test("every option tsxen knows, and a warning for the others", () => {
  const { config, warnings } = build(
    [
      'name = "full"; type = "pv"; kernel = "/k.wasm"',
      "memory = 16; maxmem = 32; vcpus = 2; maxvcpus = 4",
      'extra = "console=hvc0"; uuid = "0123456789abcdef0123456789abcdef"',
      'on_poweroff = "preserve"; on_reboot = "destroy"; on_crash = "rename-restart"',
      "cpu_weight = 512; cap = 50; max_event_channels = 64; max_grant_frames = 8; max_maptrack_frames = 16",
      "disk = [ 'file:/tmp/d.img,xvda,w' ]; vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0' ]",
      "pci = [ '01:00.0' ]",
    ].join("\n"),
  );
  assert.equal(config.kernel, "/k.wasm");
  assert.deepEqual([config.memory, config.maxmem, config.vcpus, config.maxvcpus], [16, 32, 2, 4]);
  assert.equal(config.cmdline, "console=hvc0");
  assert.deepEqual(
    [config.onPoweroff, config.onReboot, config.onCrash],
    ["preserve", "destroy", "rename-restart"],
  );
  assert.deepEqual(
    [
      config.weight,
      config.cap,
      config.maxEvtchnPort,
      config.maxGrantFrames,
      config.maxMaptrackFrames,
    ],
    [512, 50, 64, 8, 16],
  );
  assert.deepEqual(config.disks, ["file:/tmp/d.img,xvda,w"]);
  assert.deepEqual(config.vifs, ["mac=00:16:3e:00:00:01,bridge=xenbr0"]);
  assert.deepEqual(warnings, ["g.cfg:7: ignoring option 'pci', which tsxen does not know"]);
});

test("wrong types and values name the option and where it is", () => {
  const rows: Array<[string, RegExp]> = [
    ['kernel = "k"', /g\.cfg:1:1: 'name' is mandatory$/],
    ['name = "g"', /g\.cfg:1:1: 'kernel' is mandatory: the guest's \.wasm$/],
    [
      'name = "g"; kernel = "k"; memory = "16"',
      /g\.cfg:1:27: 'memory' must be a number, found a string$/,
    ],
    ['name = "g"; kernel = "k"; memory = 0', /'memory' must be between 1 and 2147483647, found 0$/],
    [
      'name = "g"; kernel = "k"; memory = 64; maxmem = 32',
      /'maxmem' \(32\) is less than memory \(64\)$/,
    ],
    [
      'name = "g"; kernel = "k"; on_crash = "explode"',
      /'on_crash' must be one of destroy, restart, .*, found 'explode'$/,
    ],
    [
      'name = "g"; kernel = "k"; type = "pvh"',
      /'type' 'pvh' is not available on wasm32: tsxen runs 'pv' and 'hvm' guests$/,
    ],
    [
      'name = "g"; kernel = "k"; disk = "x"',
      /'disk' must be a \[list\] of strings, found a string$/,
    ],
    [
      'name = "g"; kernel = "k"; vif = [ 3 ]',
      /'vif' entries must be quoted strings, found a number$/,
    ],
    ['name = "g"; kernel = "k"; uuid = "nope"', /'uuid' 'nope' is not a UUID$/],
  ];
  for (const [text, re] of rows) assert.throws(() => build(text), re, text);
});

test("every example guest's config parses and names a kernel that npm install built", async () => {
  const { readdirSync, readFileSync, existsSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { ROOT } = await import("../../extras/mini-os/paths.js");
  const dir = join(ROOT, "extras", "mini-os", "examples");
  const cfgs = readdirSync(dir).filter((f) => f.endsWith(".cfg"));
  assert.ok(cfgs.length >= 6);
  for (const f of cfgs) {
    const { config, warnings } = domainConfig(
      parseCfg(readFileSync(join(dir, f), "utf8"), f),
      f,
      dir,
    );
    assert.deepEqual(warnings, [], f);
    assert.equal(`${config.name}.cfg`, f);
    assert.ok(existsSync(config.kernel), `${f}: ${config.kernel}`);
  }
});

test("max_event_channels is Xen's key and the highest port; event_channels is not an xl.cfg key", () => {
  const xen = build('name = "g"\nkernel = "g.wasm"\nmax_event_channels = 31\n');
  assert.equal(xen.config.maxEvtchnPort, 31);
  assert.deepEqual(xen.warnings, []);
  const not = build('name = "g"\nkernel = "g.wasm"\nevent_channels = 31\n');
  assert.equal(not.config.maxEvtchnPort, 1023, "ignored, as Xen's xl ignores it");
  assert.match(not.warnings.join("\n"), /g\.cfg:3: ignoring option 'event_channels'/);
});

test("every HVM example's config parses as type hvm and names a program the build made", async () => {
  const { readdirSync, readFileSync, existsSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { ROOT } = await import("../../extras/mini-os/paths.js");
  const dir = join(ROOT, "extras", "hvm");
  const cfgs = readdirSync(dir).filter((f) => f.endsWith(".cfg"));
  assert.ok(cfgs.length >= 2);
  for (const f of cfgs) {
    const { config, warnings } = domainConfig(
      parseCfg(readFileSync(join(dir, f), "utf8"), f),
      f,
      dir,
    );
    assert.deepEqual(warnings, [], f);
    assert.equal(config.type, "hvm");
    assert.ok(existsSync(config.kernel), `${f}: ${config.kernel}`);
  }
});

test("p9 specs and an HVM guest's command line split as Xen's xl and a shell would", () => {
  const { config: c } = build(
    'name = "g"\nkernel = "g.wasm"\ntype = "hvm"\nextra = "a \'b c\' \\"d e\\""\np9 = [ "tag=data,security_model=none,path=rel/dir,readonly" ]\n',
  );
  assert.deepEqual(splitCmdline(c.cmdline), ["a", "b c", "d e"]);
  assert.equal(c.p9s.length, 1);
  const p = parseP9Spec(c.p9s[0]!);
  assert.equal(p.tag, "data");
  assert.equal(p.readonly, true);
  assert.match(p.path, /\/rel\/dir$/);
  assert.equal(p9GuestPath("data"), "/data");
  assert.throws(
    () => parseP9Spec("tag=x,path=/p,readonly=maybe"),
    /readonly='maybe' is not a yes\/no value/,
  );
  assert.throws(() => parseP9Spec("tag=x,path=/p,backend=3"), /Domain-0 only/);
  assert.throws(() => parseP9Spec("tag=x,path=/p,cache=loose"), /unknown key 'cache'/);
});
