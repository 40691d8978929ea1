/** The guest's view of its RAM now lives beside the guest drivers (impl/queue/guest-ram.ts). */
export { GuestRam } from "../../impl/queue/guest-ram.ts";
