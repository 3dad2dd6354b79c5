/** xenstored's request errors, named as xs_wire.h names them. */

/** A request that fails with xenstore error `xsName` (one of xs_wire.h's XSD_ERRORS). */
export class XsError extends Error {
  constructor(
    readonly xsName: string,
    why = "",
  ) {
    super(why ? `${xsName}: ${why}` : xsName);
  }
}
