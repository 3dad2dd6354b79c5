/**
 * Shared rings (io/ring.h) in TypeScript: a front and a back ring over one
 * page, requests answered in order across the uint32 wrap, the event
 * suppression that RING_PUSH_*_AND_CHECK_NOTIFY and RING_FINAL_CHECK_* agree
 * on, and a frontend that writes a wild req_prod; and mini-os's front ring
 * (extras/mini-os/lib/ring.ts) in a real guest against Dom0's back ring.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BackRing, FrontRing, sharedRingInit } from "../dom0/drivers/ring.js";
import { sring_header } from "../xen/include/public/io/ring.js";
import { kernel, newHost, until } from "./helpers.js";

const H = sring_header.fields;
const PAGE = 4096;
/** 112-byte slots, as blkif's requests: 32 entries in a page. */
const SLOT = 112;

function rings(start = 0): { page: Uint8Array; front: FrontRing; back: BackRing } {
  const page = new Uint8Array(PAGE);
  sharedRingInit(page);
  const dv = new DataView(page.buffer);
  for (const f of [H.req_prod, H.rsp_prod]) dv.setUint32(f.offset, start >>> 0, true);
  for (const f of [H.req_event, H.rsp_event]) dv.setUint32(f.offset, (start + 1) >>> 0, true);
  return { page, front: new FrontRing(page, SLOT, start), back: new BackRing(page, SLOT, start) };
}

const u32 = (page: Uint8Array, off: number): number =>
  new DataView(page.buffer).getUint32(off, true);

test("ring size: 32 slots of 112 bytes in a page, and a slot too large is refused", () => {
  const { front } = rings();
  assert.equal(front.size, 32);
  assert.equal(front.freeRequests(), 32);
  assert.throws(() => new FrontRing(new Uint8Array(PAGE), PAGE), /does not fit/);
});

for (const start of [0, 0xffff_fff0]) {
  test(`requests and responses in order, 1000 of them, from index ${start.toString(16)}`, () => {
    const { page, front, back } = rings(start);
    let sent = 0;
    let answered = 0;
    while (answered < 1000) {
      const burst = Math.min(front.freeRequests(), 7, 1000 - sent);
      for (let i = 0; i < burst; i++) {
        const rq = front.nextRequest();
        new DataView(rq.buffer, rq.byteOffset).setUint32(0, sent + i, true);
      }
      sent += burst;
      front.pushRequests();
      // The backend takes up to 5 at a time, answering each with id * 3.
      let n = 0;
      while (back.unconsumedRequests() > 0 && n++ < 5) {
        const rq = back.nextRequest();
        const id = new DataView(rq.buffer, rq.byteOffset).getUint32(0, true);
        const rs = back.nextResponse();
        new DataView(rs.buffer, rs.byteOffset).setUint32(4, id * 3, true);
      }
      back.pushResponses();
      while (front.unconsumedResponses() > 0) {
        const rs = front.nextResponse();
        assert.equal(new DataView(rs.buffer, rs.byteOffset).getUint32(4, true), answered * 3);
        answered++;
      }
    }
    assert.equal(answered, 1000);
    assert.equal(u32(page, H.req_prod.offset), (start + 1000) >>> 0);
    assert.equal(u32(page, H.rsp_prod.offset), (start + 1000) >>> 0);
    assert.equal(front.freeRequests(), 32);
  });
}

test("a full ring refuses another request", () => {
  const { front } = rings();
  for (let i = 0; i < 32; i++) front.nextRequest();
  assert.ok(front.full());
  assert.throws(() => front.nextRequest(), /all 32 request slots are in use/);
});

test("notify: the first push after a final check notifies, the pushes while the peer is busy do not", () => {
  const { front, back } = rings(0xffff_fffe);
  // A fresh ring wants an event at its first request.
  front.nextRequest();
  assert.equal(front.pushRequests(), true);
  // The backend has not rechecked: req_event is still at the first, so more pushes stay quiet.
  front.nextRequest();
  assert.equal(front.pushRequests(), false);
  // It drains, then re-arms; the next request wants an event again.
  while (back.unconsumedRequests() > 0) back.nextRequest();
  assert.equal(back.finalCheckForRequests(), false);
  front.nextRequest();
  assert.equal(front.pushRequests(), true);
  // A final check that finds work says so without needing an event.
  assert.equal(back.finalCheckForRequests(), true);

  // Responses follow the same rule in the other direction.
  back.nextResponse();
  assert.equal(back.pushResponses(), true);
  back.nextResponse();
  assert.equal(back.pushResponses(), false);
  while (front.unconsumedResponses() > 0) front.nextResponse();
  assert.equal(front.finalCheckForResponses(), false);
  back.nextResponse();
  assert.equal(back.pushResponses(), true);
});

test("a frontend's wild req_prod: the backend sees at most a ring's worth and never overruns its answers", () => {
  const { page, back } = rings();
  new DataView(page.buffer).setUint32(H.req_prod.offset, 0x8000_0000, true);
  assert.equal(back.unconsumedRequests(), 32);
  for (let i = 0; i < 32; i++) back.nextRequest();
  // 32 taken, none answered: taking one more would overwrite an unanswered slot.
  assert.equal(back.requestConsOverflow(), true);
  assert.equal(back.unconsumedRequests(), 0);
  assert.throws(() => back.nextRequest(), /no request to consume/);
  // Answering one frees one.
  back.nextResponse();
  assert.equal(back.unconsumedRequests(), 1);
  assert.equal(back.requestConsOverflow(), false);
  back.nextRequest();
  // A req_prod that moves backwards reads as a huge count, bounded the same way:
  // nothing while 32 are unanswered, a ring's worth once all are answered.
  new DataView(page.buffer).setUint32(H.req_prod.offset, 3, true);
  assert.equal(back.unconsumedRequests(), 0);
  for (let i = 0; i < 32; i++) back.nextResponse();
  assert.equal(back.unconsumedRequests(), 32);
});

test("a backend attaching to a live ring goes on after its last response; a frontend's wild rsp_prod buys it nothing", () => {
  const page = new Uint8Array(PAGE);
  sharedRingInit(page);
  const front = new FrontRing(page, SLOT);
  const first = new BackRing(page, SLOT);
  // Five requests: three answered and published, two taken but unanswered
  // when the first backend goes (a save, a migration).
  for (let i = 0; i < 5; i++) front.nextRequest()[0] = 10 + i;
  front.pushRequests();
  for (let i = 0; i < 5; i++) first.nextRequest();
  for (let i = 0; i < 3; i++) first.nextResponse()[0] = 20 + i;
  first.pushResponses();
  const next = BackRing.attach(page, SLOT);
  assert.equal(next.reqCons, 3, "after the last published response");
  assert.equal(next.unconsumedRequests(), 2, "the two unanswered come again");
  assert.deepEqual([next.nextRequest()[0], next.nextRequest()[0]], [13, 14]);
  // A frontend that wrote nonsense into rsp_prod: the attach starts there,
  // and every count after it is bounded by the ring as before.
  new DataView(page.buffer).setUint32(H.rsp_prod.offset, 0xdead_beef, true);
  const wild = BackRing.attach(page, SLOT);
  assert.ok(wild.unconsumedRequests() <= 32);
  assert.equal(wild.requestProdOverflow(), true, "its req_prod is seen as bogus");
});

test("mini-os's front ring (lib/ring.ts) against Dom0's back ring, across the uint32 wrap", async () => {
  const host = newHost();
  try {
    const start = 2 ** 32 - 100;
    const d = host.createSync({
      name: "ringtest",
      kernel: await kernel("ringtest"),
      memory: 2,
      cmdline: `start=${start} n=1000`,
    });
    let out = "";
    d.consoleListeners.add((b) => (out += new TextDecoder().decode(b)));
    await until(() => /ringtest: ref \d+ port \d+/.test(out), 5000, "the guest's offer");
    const [, ref, port, size] = /ringtest: ref (\d+) port (\d+) size (\d+)/.exec(out)!.map(Number);
    assert.equal(size, 128, "(4096 - 64) / 16 = 252 entries round down to 128");
    const gnt = host.dom0.openGnttab();
    const ev = host.dom0.openEvtchn();
    const map = gnt.map(d.domid, ref!);
    const back = new BackRing(map.page, 16, start);
    // The guest's header is io/ring.h's, byte for byte: indices at 0, 4, 8, 12.
    const dv = new DataView(map.page.buffer, map.page.byteOffset, PAGE);
    assert.equal(dv.getUint32(H.rsp_prod.offset, true), start);
    const local = ev.bindInterdomain(d.domid, port!);
    let answered = 0;
    const serve = (): void => {
      for (;;) {
        while (back.unconsumedRequests() > 0) {
          const v = new DataView(back.nextRequest().slice(0, 4).buffer).getUint32(0, true);
          const slot = back.nextResponse();
          new DataView(slot.buffer, slot.byteOffset, 4).setUint32(0, v * 2, true);
          answered++;
        }
        if (back.pushResponses()) ev.notify(local);
        if (!back.finalCheckForRequests()) break;
      }
    };
    ev.on((p) => {
      ev.unmask(p);
      serve();
    });
    // As a backend does on connecting: requests sent before the bind count too.
    serve();
    await until(() => d.isShutdown, 10_000, "the guest to finish");
    assert.match(out, new RegExp(`ringtest: ok 1000 through ${(start + 1000) % 2 ** 32}\\b`), out);
    assert.equal(answered, 1000);
    assert.equal(d.shutdownName, "poweroff");
    gnt.unmap(map);
    ev.dispose();
    gnt.dispose();
  } finally {
    await host.shutdown();
  }
});
