// mini-os for wasm32: the guest kernel library. Kernels import from here.
export * from "./hypervisor";
export * from "./console";
export * from "./kernel";
export * from "./events";
export * from "./sched";
export * from "./xen_abi";
export * from "./gnttab";
export * from "./xenbus";
export * from "./vchan";
export * from "./balloon";
export * from "./channel";
