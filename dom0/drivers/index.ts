/**
 * Dom0's kernel drivers, as Dom0 services see them: one privcmd, one event
 * channel device and one grant-ref allocator per host, from which each
 * service opens its own handles (XenEvtchn, XenGnttab, XenGntshr), as Linux's
 * Dom0 services open /dev/xen/{evtchn,gntdev,gntalloc}.
 */
import type { Hypervisor } from "../../xen/common/hypervisor.js";
import { Privcmd } from "./privcmd.js";
import { EvtchnDevice, type XenEvtchn } from "./evtchn.js";
import { XenGnttab } from "./gntdev.js";
import { GrantRefAllocator, XenGntshr } from "./gntalloc.js";

export class Dom0Drivers {
  readonly privcmd: Privcmd;
  readonly evtchnDevice: EvtchnDevice;
  private readonly grantRefs: GrantRefAllocator;

  constructor(hv: Hypervisor) {
    this.privcmd = new Privcmd(hv);
    this.evtchnDevice = new EvtchnDevice(this.privcmd);
    this.grantRefs = new GrantRefAllocator(this.privcmd);
  }

  /** A new event channel handle (xenevtchn_open). */
  openEvtchn(): XenEvtchn {
    return this.evtchnDevice.open();
  }

  /** A new grant mapping handle (xengnttab_open). */
  openGnttab(): XenGnttab {
    return new XenGnttab(this.privcmd);
  }

  /** A new grant sharing handle (xengntshr_open). */
  openGntshr(): XenGntshr {
    return new XenGntshr(this.grantRefs);
  }
}
