/**
 * The mutant adapters: each reintroduces one known bug around the reference adapter's
 * impl/ calls (selected with `--mutant <id>`), so the suite can show it catches it.
 * `subject` says which impl/ subject the bug lives in: a mutant whose subject has not
 * landed has no effect and is reported as not done.
 */

export interface Mutant {
  readonly id: string;
  readonly subject: "queue" | "chain" | "iovec" | "vsock" | "usb-vsock" | "net" | "packed";
  /** Where the bug was found. */
  readonly source: string;
  /** What the mutant does differently. */
  readonly bug: string;
  /** The rule id the bug breaks: the suite must fail that rule (at must or safety level). */
  readonly breaks: string;
}

export const MUTANTS: readonly Mutant[] = [
  {
    id: "avail-idx-far-ahead",
    subject: "queue",
    source: "rust-vmm/vm-virtio PR 196",
    bug: "pop does not reject avail.idx more than the queue size ahead of next_avail",
    breaks: "VQ-POP-AVAIL-IDX",
  },
  {
    id: "size-zero",
    subject: "queue",
    source: "rust-vmm/vm-virtio PR 173",
    bug: "a queue of size 0 is accepted, and later indexing divides by it",
    breaks: "VQ-SIZE-ZERO",
  },
  {
    id: "pop-after-reset",
    subject: "queue",
    source: "rust-vmm/vm-virtio PR 225",
    bug: "reset leaves the queue ready with its indices, so pop still returns chains",
    breaks: "VQ-RESET",
  },
  {
    id: "chain-over-4g",
    subject: "chain",
    source: "rust-vmm/vm-virtio PR 236",
    bug: "a chain's total length is summed in a u32 and wraps past 2^32 bytes",
    breaks: "CHAIN-LEN-U32",
  },
  {
    id: "indirect-aligned",
    subject: "chain",
    source: "rust-vmm/vm-virtio PR 220",
    bug: "an indirect descriptor table not aligned to 16 bytes is refused",
    breaks: "CHAIN-INDIRECT-UNALIGNED",
  },
  {
    id: "vsock-two-desc",
    subject: "vsock",
    source: "rust-vmm/vm-virtio issue 204",
    bug: "a TX packet must have its header and its data in two separate descriptors",
    breaks: "VSOCK-LAYOUT-SINGLE",
  },
  {
    id: "net-num-buffers-be",
    subject: "net",
    source: "v86 virtio-net",
    bug: "num_buffers in the RX virtio-net header is written big-endian",
    breaks: "NET-RX-HDR",
  },
  {
    id: "net-mtu-offset-12",
    subject: "net",
    source: "squib net.rs",
    bug: "mtu is placed at config space offset 12 instead of 10",
    breaks: "NET-CFG-LAYOUT",
  },
  {
    id: "prepare-kick-off-by-one",
    subject: "queue",
    source: "virtio-lab",
    bug: "prepareKick compares used_event against next_used instead of next_used - 1",
    breaks: "VQ-PREPARE-KICK",
  },
  {
    id: "used-slot-from-guest",
    subject: "queue",
    source: "a JavaScript emulator's virtqueue (issue 13)",
    bug: "addUsed picks its used ring slot from used.idx as read in guest memory, a field only the device writes",
    breaks: "VQ-DEVICE-ACCESS",
  },
  {
    id: "write-readable",
    subject: "iovec",
    source: "virtio-lab",
    bug: "a device write goes into a device-readable descriptor",
    breaks: "IOV-MUT-READ-ONLY",
  },
  {
    id: "iovec-no-u32-check",
    subject: "iovec",
    source: "Firecracker iovec.rs",
    bug: "a chain whose total length overflows u32 is accepted as an iovec",
    breaks: "IOV-LEN-U32",
  },
  {
    id: "vsock-pkt-len-off-by-one",
    subject: "vsock",
    source: "cloud-hypervisor vsock packet.rs",
    bug: "InvalidPktLen is raised for len >= MAX_PKT_BUF_SIZE, so a full 64 KiB packet is refused",
    breaks: "VSOCK-TX-ORDER",
  },
  {
    id: "usb-payload-past-buffer",
    subject: "usb-vsock",
    source: "Fuchsia usb_vsock",
    bug: "a packet whose payload_len runs past the end of the buffer is accepted",
    breaks: "USB-PARSE-PAYLOAD-LEN",
  },
  {
    id: "packed-wrap-not-flipped",
    subject: "packed",
    source: "packed-ring bug class: a wrap counter not flipped at the ring's end (VIRTIO 1.2 §2.8.1)",
    bug: "the used wrap counter stays 1 past the ring's end, so an odd lap's used descriptors carry AVAIL = USED = 1",
    breaks: "PVQ-WRAP",
  },
  {
    id: "packed-used-id-from-slot",
    subject: "packed",
    source: "packed-ring bug class: the split ring's head index reused as the used id (VIRTIO 1.2 §2.8.6)",
    bug: "addUsed writes the ring slot as the used descriptor's id instead of the buffer id",
    breaks: "PVQ-ADD-USED",
  },
  {
    id: "packed-off-wrap-ignored",
    subject: "packed",
    source: "packed-ring bug class: event suppression off_wrap's wrap bit dropped (VIRTIO 1.2 §2.8.14)",
    bug: "prepareKick takes off_wrap & 0x7fff as the event index whatever its wrap bit",
    breaks: "PVQ-NOTIFY-DRIVER",
  },
];
