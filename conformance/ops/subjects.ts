/** The operations of every subject that has landed in impl/, beyond guest memory. */
import { chainOps } from "./chain.ts";
import { iovecOps } from "./iovec.ts";
import { usbOps } from "./usb-vsock.ts";
import { netDeviceOps, netOps } from "./net.ts";
import { packedOps } from "./packed.ts";
import { queueOps } from "./queue.ts";
import { vsockOps } from "./vsock.ts";
import type { Handler } from "./world.ts";

export const subjectOps = (): Record<string, Handler> => ({
  ...chainOps,
  ...iovecOps,
  ...usbOps,
  ...netOps,
  ...netDeviceOps,
  ...queueOps,
  ...packedOps,
  ...vsockOps,
});
