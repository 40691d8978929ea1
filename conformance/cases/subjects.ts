/** Cases of the subjects beyond guest memory that have landed in impl/. */
import { chainCases } from "./chain.ts";
import { iovecCases } from "./iovec.ts";
import { usbCases } from "./usb-vsock.ts";
import { netCases } from "./net.ts";
import { netDeviceCases } from "./net-device.ts";
import { packedCases } from "./packed.ts";
import { queueCases } from "./queue.ts";
import { vsockCases } from "./vsock.ts";
import type { AnyCase } from "./types.ts";

export const subjectCases = (): readonly AnyCase[] => [
  ...queueCases,
  ...packedCases,
  ...chainCases,
  ...iovecCases,
  ...usbCases,
  ...vsockCases,
  ...netCases,
  ...netDeviceCases,
];
