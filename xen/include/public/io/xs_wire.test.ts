/** xs_wire codec: golden bytes for every message type; the parser fed whole and a byte at a time. */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as W from "./xs_wire.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

test("every message type encodes as a 16-byte little-endian header plus payload", () => {
  const types = [
    W.XS_CONTROL,
    W.XS_DIRECTORY,
    W.XS_READ,
    W.XS_GET_PERMS,
    W.XS_WATCH,
    W.XS_UNWATCH,
    W.XS_TRANSACTION_START,
    W.XS_TRANSACTION_END,
    W.XS_INTRODUCE,
    W.XS_RELEASE,
    W.XS_GET_DOMAIN_PATH,
    W.XS_WRITE,
    W.XS_MKDIR,
    W.XS_RM,
    W.XS_SET_PERMS,
    W.XS_WATCH_EVENT,
    W.XS_ERROR,
    W.XS_IS_DOMAIN_INTRODUCED,
    W.XS_RESUME,
    W.XS_SET_TARGET,
    W.XS_RESET_WATCHES,
    W.XS_DIRECTORY_PART,
    W.XS_GET_FEATURE,
    W.XS_SET_FEATURE,
    W.XS_GET_QUOTA,
    W.XS_SET_QUOTA,
  ];
  assert.deepEqual(
    types,
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 24, 25, 26],
  );
  for (const type of types) {
    const b = W.encodeXsMsg({ type, reqId: 0x01020304, txId: 7, payload: W.joinNul(["/a"]) });
    const t = type.toString(16).padStart(2, "0");
    assert.equal(hex(b), `${t}000000` + "04030201" + "07000000" + "03000000" + "2f6100");
  }
  // READ of /local/domain/1/name, as libxenstore sends it.
  assert.equal(
    hex(
      W.encodeXsMsg({
        type: W.XS_READ,
        reqId: 1,
        txId: 0,
        payload: W.joinNul(["/local/domain/1/name"]),
      }),
    ),
    "02000000010000000000000015000000" + Buffer.from("/local/domain/1/name\0").toString("hex"),
  );
});

test("the parser gives the same messages fed whole or a byte at a time", () => {
  const msgs = [
    { type: W.XS_WRITE, reqId: 1, txId: 0, payload: new Uint8Array([0x2f, 0x78, 0, 1, 2, 0]) },
    { type: W.XS_TRANSACTION_START, reqId: 2, txId: 0, payload: new Uint8Array([0]) },
    { type: W.XS_READ, reqId: 3, txId: 9, payload: new Uint8Array(0) },
    { type: W.XS_DIRECTORY, reqId: 4, txId: 0, payload: new Uint8Array(W.XENSTORE_PAYLOAD_MAX) },
  ];
  const stream = Buffer.concat(msgs.map(W.encodeXsMsg));
  const whole = new W.XsParser().push(stream);
  assert.deepEqual(
    whole.map((r) => ("msg" in r ? r.msg : r)),
    msgs,
  );
  const p = new W.XsParser();
  const got: W.XsParse[] = [];
  for (const byte of stream) got.push(...p.push(new Uint8Array([byte])));
  assert.deepEqual(got, whole);
  assert.equal(p.pending, 0);
});

test("a payload over 4096 bytes is an error and the stream stops", () => {
  const p = new W.XsParser();
  const head = new Uint8Array(16);
  new DataView(head.buffer).setUint32(12, 4097, true);
  assert.deepEqual(p.push(head), [
    { error: "payload of 4097 bytes exceeds XENSTORE_PAYLOAD_MAX (4096)" },
  ]);
  assert.deepEqual(
    p.push(W.encodeXsMsg({ type: 2, reqId: 1, txId: 0, payload: new Uint8Array(1) })),
    [],
  );
});

test("NUL-separated payloads", () => {
  assert.deepEqual(
    W.splitNul(new TextEncoder().encode("a\0bc\0")).map((x) => new TextDecoder().decode(x)),
    ["a", "bc"],
  );
  assert.deepEqual(
    W.splitNul(new TextEncoder().encode("a\0tail")).map((x) => new TextDecoder().decode(x)),
    ["a", "tail"],
  );
  assert.equal(hex(W.joinNul(["", "x"])), "007800");
});
