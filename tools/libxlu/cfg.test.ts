/** xl.cfg syntax: values, lists, comments, separators, +=, and errors with line and column. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { CfgError, parseCfg, type CfgValue } from "./cfg.js";

const plain = (v: CfgValue): unknown => (v.kind === "list" ? v.items.map(plain) : v.value);

test("strings, numbers in three bases, nested lists, comments, ; and +=", () => {
  const m = parseCfg(
    [
      "# a guest",
      'name = "hello"   # trailing comment',
      "kernel='build/mini-os/hello.wasm'; memory = 16",
      "maxmem=0x20 ; vcpus = 010",
      'extra = "a \\"quoted\\" word\\tand\\x41\\101"',
      "disk = [ 'file:/tmp/a.img,xvda,w',",
      "         'phy:/dev/b,xvdb,r', ]",
      "nested = [ 1, [ 'x', 2 ], [] ]",
      "disk += [ 'file:/tmp/c.img,xvdc,w' ]",
      "extra += ' more'",
      "",
    ].join("\n"),
    "hello.cfg",
  );
  const get = (k: string): unknown => plain(m.get(k)!.value);
  assert.equal(get("name"), "hello");
  assert.equal(get("kernel"), "build/mini-os/hello.wasm");
  assert.equal(get("memory"), 16);
  assert.equal(get("maxmem"), 32);
  assert.equal(get("vcpus"), 8, "0-prefixed is octal");
  assert.equal(get("extra"), 'a "quoted" word\tandAA more');
  assert.deepEqual(get("disk"), [
    "file:/tmp/a.img,xvda,w",
    "phy:/dev/b,xvdb,r",
    "file:/tmp/c.img,xvdc,w",
  ]);
  assert.deepEqual(get("nested"), [1, ["x", 2], []]);
  assert.deepEqual([m.get("memory")!.line, m.get("memory")!.col], [3, 36]);
});

test("syntax errors name the file, line, column and what was expected", () => {
  const rows: Array<[string, RegExp]> = [
    ['name = "unterminated', /^x\.cfg:1:8: an unterminated string$/],
    [
      "memory = ",
      /^x\.cfg:1:10: expected a value \(a quoted string, a number or a \[list\]\), found the end of the file$/,
    ],
    ["memory 16", /^x\.cfg:1:8: expected '=' after 'memory', found '1'$/],
    [
      "memory = 16 32",
      /^x\.cfg:1:13: expected a new line or ';' after the value of 'memory', found '3'$/,
    ],
    [
      "disk = [ 'a' 'b' ]",
      /^x\.cfg:1:14: expected ',' or '\]' in the list opened at 1:8, found '''$/,
    ],
    ["vcpus = 09", /^x\.cfg:1:9: '09' is not a number/],
    ["name = 'a'\n= 3", /^x\.cfg:2:1: expected a setting name, found '='$/],
    ["disk = [ 'a' ]\ndisk += 'b'", /^x\.cfg:2:1: 'disk \+=' needs a list like its first setting$/],
    ["memory = hello", /found 'h'$/],
  ];
  for (const [text, re] of rows) {
    assert.throws(
      () => parseCfg(text, "x.cfg"),
      (e: unknown) => e instanceof CfgError && re.test(e.message),
      text,
    );
  }
});
