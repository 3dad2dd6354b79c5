// dirtier: a guest that dirties nearly all of its memory all the time, for
// live migration. Round after round it visits every page of a region,
// checks that the page still holds what it wrote there the round before
// (two words: the round, and the round mixed with the page number; both 0
// before the first round), then
// writes the new round. A page that a migration carried wrongly is found
// on the next round and named on the console. It reports its progress
// every 200 ms of its own time.
//
// With `pages=N period=MS` on its command line it dirties at a set rate
// instead: N pages, then a sleep of MS milliseconds, and so on through the
// region (the benchmark's guest that dirties 1 MiB a round).
import { cmdline_arg, cons, domid, msleep, nr_pages, NOW } from "../lib/index";

const REPORT_NS: u64 = 200000000;

export function _start(): void {
  // From well above the data and the runtime's heap to 16 pages short of the top.
  const first = <u32>((__heap_base + 4095) >> 12) + 64;
  const last = <u32>nr_pages() - 16;
  let next = NOW() + REPORT_NS;
  const burst = <u32>cmdline_arg("pages", 0);
  const period = cmdline_arg("period", 0);
  let inBurst: u32 = 0;
  for (let round: u32 = 1; ; round++) {
    for (let p = first; p < last; p++) {
      if (burst > 0 && ++inBurst > burst) {
        inBurst = 1;
        msleep(period);
      }
      const a = (<usize>p) << 12;
      const was = load<u32>(a);
      const mix = load<u32>(a + 4092);
      const mixWas: u32 = round == 1 ? 0 : (round - 1) ^ (p * 2654435761);
      if (was != round - 1 || mix != mixWas) {
        cons
          .s("dirtier d")
          .u(domid())
          .s(": page ")
          .u(p)
          .s(" holds ")
          .u(was)
          .s(", expected ")
          .u(round - 1)
          .nl();
        for (;;) {}
      }
      store<u32>(a, round);
      store<u32>(a + 4092, round ^ (p * 2654435761));
    }
    const now = NOW();
    if (now >= next) {
      next = now + REPORT_NS;
      cons
        .s("dirtier d")
        .u(domid())
        .s(": round ")
        .u(round)
        .s(", ")
        .u(last - first)
        .s(" pages")
        .nl();
    }
  }
}
