/**
 * QEMU device arguments for the real guest, and the TAP the net runs use. The reference the
 * net runs compare against is QEMU's own (built-in) virtio-net on a TAP inside a network
 * namespace we create: QEMU is started inside the namespace (`LaunchOptions.netns`) and
 * opens the TAP there by name; the host end has an address in the namespace, so every
 * packet stays inside it and goes with it.
 */
import { Effect, type Scope } from "effect";
import { ip } from "../../impl/native/netns.ts";

/** Guest and host addresses of the guest links (one /24 inside a namespace of ours). */
export const GUEST_NET = {
  hostIp: "10.203.0.1",
  guestIp: "10.203.0.2",
  prefix: 24,
  guestMac: "52:54:00:12:34:56",
} as const;

/** A persistent TAP in `ns` with `cidr` on its host end, up; deleted with the scope. */
export const acquireTapIn = (
  ns: string,
  ifName: string,
  cidr: string,
): Effect.Effect<string, { readonly _tag: "TapSetupError"; readonly message: string }, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        ip("-n", ns, "tuntap", "add", "dev", ifName, "mode", "tap", "vnet_hdr");
        ip("-n", ns, "addr", "add", cidr, "dev", ifName);
        ip("-n", ns, "link", "set", ifName, "up");
        return ifName;
      },
      catch: (e) => ({ _tag: "TapSetupError" as const, message: e instanceof Error ? e.message : String(e) }),
    }),
    () =>
      Effect.sync(() => {
        try {
          ip("-n", ns, "link", "delete", ifName);
        } catch {
          // the namespace (and the TAP with it) is already gone
        }
      }),
  );

/** QEMU arguments for its built-in virtio-net on TAP `ifName` (no vhost-net: all in QEMU). */
export const builtinNetArgs = (ifName: string, mac: string = GUEST_NET.guestMac): string[] => [
  "-netdev",
  `tap,id=n0,ifname=${ifName},script=no,downscript=no,vhost=off`,
  "-device",
  // vectors=0 as for the vhost-user device, so both guests run the same driver paths.
  `virtio-net-pci,netdev=n0,mac=${mac},vectors=0`,
];

/**
 * QEMU arguments for a vhost-user virtio-net whose back-end listens on `socket`; `packed`
 * offers the guest VIRTIO_F_RING_PACKED (`packed=on`).
 */
export const vhostUserNetArgs = (
  socket: string,
  mac: string = GUEST_NET.guestMac,
  opts: { readonly packed?: boolean } = {},
): string[] => [
  "-chardev",
  `socket,id=c0,path=${socket}`,
  "-netdev",
  "vhost-user,id=n0,chardev=c0",
  "-device",
  // QEMU 7.2 under TCG crashes in vhost_net_start with MSI-X; vectors=0 avoids it.
  `virtio-net-pci,netdev=n0,mac=${mac},vectors=0${opts.packed === true ? ",packed=on" : ""}`,
];

/**
 * QEMU arguments for a vhost-user vsock device whose back-end listens on `socket`; `packed`
 * offers the guest VIRTIO_F_RING_PACKED (`packed=on`).
 */
export const vhostUserVsockArgs = (socket: string, opts: { readonly packed?: boolean } = {}): string[] => [
  "-chardev",
  `socket,id=c1,path=${socket}`,
  "-device",
  `vhost-user-vsock-pci,chardev=c1${opts.packed === true ? ",packed=on" : ""}`,
];
