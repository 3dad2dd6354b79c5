/**
 * A software Ethernet bridge (what Dom0's `xenbr0` is, brctl's learning
 * switch): ports attach and detach; each frame's source MAC is learnt for
 * the port it came in on; a frame to a learnt unicast MAC goes to that port
 * alone, anything else (broadcast, multicast, unknown) to every other port.
 */

/** A bridge port: a vif, or anything else that takes frames. */
export interface BridgePort {
  readonly name: string;
  /** A frame for this port (the bridge keeps no reference to it). */
  deliver(frame: Uint8Array): void;
}

const macKey = (f: Uint8Array, at: number): string =>
  Array.from(f.subarray(at, at + 6), (b) => b.toString(16).padStart(2, "0")).join(":");

export class Bridge {
  private readonly ports = new Set<BridgePort>();
  private readonly fdb = new Map<string, BridgePort>();
  frames = 0;
  flooded = 0;

  constructor(readonly name: string) {}

  attach(p: BridgePort): void {
    this.ports.add(p);
  }

  detach(p: BridgePort): void {
    this.ports.delete(p);
    for (const [mac, q] of this.fdb) if (q === p) this.fdb.delete(mac);
  }

  get portNames(): string[] {
    return [...this.ports].map((p) => p.name);
  }

  /** Forwards `frame` that came in on `from`. Frames shorter than an Ethernet header are dropped. */
  forward(frame: Uint8Array, from: BridgePort): void {
    if (frame.length < 14 || !this.ports.has(from)) return;
    this.frames++;
    const src = macKey(frame, 6);
    // A multicast source is not a station: never learn it.
    if ((frame[6]! & 1) === 0) this.fdb.set(src, from);
    const multicast = (frame[0]! & 1) !== 0;
    const to = multicast ? undefined : this.fdb.get(macKey(frame, 0));
    if (to) {
      if (to !== from) to.deliver(frame);
      return;
    }
    this.flooded++;
    for (const p of this.ports) if (p !== from) p.deliver(frame);
  }
}
