/**
 * `xl list`'s table: Name, ID, Mem, VCPUs, State, Time(s), with the widths of
 * xl's list_domains ("%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f").
 */
import type { DomainInfo } from "./host.js";

export function formatList(rows: DomainInfo[]): string {
  const out = ["Name                                        ID   Mem VCPUs\tState\tTime(s)"];
  for (const r of rows) {
    out.push(
      `${r.name.padEnd(40)} ${String(r.domid).padStart(5)} ${String(r.memMiB).padStart(5)} ${String(r.vcpus).padStart(5)}     ${r.stateFlags}  ${r.cpuTime.toFixed(1).padStart(8)}`,
    );
  }
  return out.join("\n");
}
