/**
 * System time: nanoseconds since the hypervisor booted, as Xen's NOW(). Guests
 * see it in vcpu_time_info.system_time; wallclock = wc_sec/wc_nsec + NOW().
 */
const bootMs = performance.now();

/** Nanoseconds of system time (exact to the microsecond, as a double). */
export function NOW(): number {
  return Math.round((performance.now() - bootMs) * 1e6);
}

/** Wallclock time (ns since the Unix epoch) at which system time was 0. */
export const BOOT_WALLCLOCK_NS = Date.now() * 1e6 - NOW();

export const MILLISECS = (ms: number): number => ms * 1e6;
export const SECONDS = (s: number): number => s * 1e9;
