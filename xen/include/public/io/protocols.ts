/**
 * Names of the ring ABIs a frontend may state in its `protocol` node,
 * following `xen/include/public/io/protocols.h`. Xen has none for wasm32:
 * tsxen's is "wasm32-abi" (its struct layouts are those of xen/include/
 * public with wasm32's natural alignment, which match x86_64's for the
 * rings tsxen uses). A frontend that writes no protocol means the native one.
 */
export const XEN_IO_PROTO_ABI_X86_32 = "x86_32-abi";
export const XEN_IO_PROTO_ABI_X86_64 = "x86_64-abi";
export const XEN_IO_PROTO_ABI_ARM = "arm-abi";
/** wasm32's, tsxen's own name. */
export const XEN_IO_PROTO_ABI_WASM32 = "wasm32-abi";
export const XEN_IO_PROTO_ABI_NATIVE = XEN_IO_PROTO_ABI_WASM32;
