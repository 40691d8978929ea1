/**
 * The mutant adapters: each reintroduces one known bug around the reference adapter's
 * impl/ calls (selected with `--mutant <id>`), so the suite can show it catches it.
 * `subject` says which impl/ subject the bug lives in.
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
  /**
   * Other MUST/SAFETY rules the mutant may fail besides `breaks`, each with the reason that
   * is right; failing any rule not listed here fails conformance/mutants.test.ts.
   */
  readonly alsoBreaks?: Readonly<Record<string, string>>;
}

const PACKED_ADD_READ =
  "with IN_ORDER the one used descriptor addUsed writes carries the id PVQ-IN-ORDER names: its answer and the ring read after it are checked for PVQ-ADD-USED and PVQ-IN-ORDER at once (one memory.read)";
const PACKED_PUBLISH_READ =
  "the ring read back after packed.publish is checked for PVQ-PUBLISH-USED, PVQ-USED-FLAGS and PVQ-WRAP at once (one memory.read)";
const NET_RX_READBACK =
  "net.rx reads each RX buffer back whole (header and frame in one memory.read) and charges a difference there to every rule of the case: no per-step rules for the parts yet";
const IOV_WRITE_READBACK =
  "iovec.write reads guest memory back in one memory.read and charges a difference there to every rule of the case: no per-step rules for the parts yet";

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
    alsoBreaks: {
      "NET-HDR-LAYOUT": NET_RX_READBACK,
      "NET-RX-USED-LEN": NET_RX_READBACK,
      "NET-RX-WRITABLE-ONLY": NET_RX_READBACK,
      "NET-RX-ORDER": NET_RX_READBACK,
      "NET-RX-NO-ROOM": NET_RX_READBACK,
    },
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
    alsoBreaks: {
      "VQ-ADD-USED":
        "between two addUsed with no publish (Firecracker's order) used.idx in memory lags next_used, so even an honest driver's element lands in the wrong slot: addUsed's own rule fails",
      "VQ-LAYOUT":
        "the used ring read back after that addUsed is checked for VQ-LAYOUT too (one memory.read)",
    },
  },
  {
    id: "write-readable",
    subject: "iovec",
    source: "virtio-lab",
    bug: "a device write goes into a device-readable descriptor",
    breaks: "IOV-MUT-READ-ONLY",
    alsoBreaks: {
      "IOV-WRITE-LEN": IOV_WRITE_READBACK,
      "IOV-SEG-MEMORY": IOV_WRITE_READBACK,
      "IOV-DEQUE-CAPACITY": IOV_WRITE_READBACK,
      "IOV-APPEND-RESULT": IOV_WRITE_READBACK,
      "IOV-OVERLAP-ORDER": IOV_WRITE_READBACK,
    },
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
    alsoBreaks: {
      "USB-PARSE-BOUNDS":
        "taking payload_len at its word is reading past the transfer, which USB-PARSE-BOUNDS forbids; usb.parse-bounds checks both rules with one answer",
    },
  },
  {
    id: "packed-wrap-not-flipped",
    subject: "packed",
    source: "packed-ring bug class: a wrap counter not flipped at the ring's end (VIRTIO 1.2 §2.8.1)",
    bug: "the used wrap counter stays 1 past the ring's end, so an odd lap's used descriptors carry AVAIL = USED = 1",
    breaks: "PVQ-WRAP",
    alsoBreaks: {
      "PVQ-PUBLISH-USED": PACKED_PUBLISH_READ,
      "PVQ-USED-FLAGS": PACKED_PUBLISH_READ,
    },
  },
  {
    id: "packed-used-id-from-slot",
    subject: "packed",
    source: "packed-ring bug class: the split ring's head index reused as the used id (VIRTIO 1.2 §2.8.6)",
    bug: "addUsed writes the ring slot as the used descriptor's id instead of the buffer id",
    breaks: "PVQ-ADD-USED",
    alsoBreaks: {
      "PVQ-IN-ORDER": PACKED_ADD_READ,
      "PVQ-GUEST-INPUT":
        "in packed.hostile every exact step but a pop and the final read-back is charged to PVQ-GUEST-INPUT, the ring read after addUsed included",
    },
  },
  {
    id: "packed-off-wrap-ignored",
    subject: "packed",
    source: "packed-ring bug class: event suppression off_wrap's wrap bit dropped (VIRTIO 1.2 §2.8.14)",
    bug: "prepareKick takes off_wrap & 0x7fff as the event index whatever its wrap bit",
    breaks: "PVQ-NOTIFY-DRIVER",
  },
];

// ---- rules without a mutant of their own, and why -----------------------------------------

const POP_STEP =
  "no mutant yet; a queue.pop answer (the chain and the new position) is checked for VQ-POP-EMPTY, VQ-POP-ADVANCE, VQ-LEN and VQ-LAYOUT at once, so a pop bug fails all four";
const AFTER_EFFECT =
  "its op answers null: a bug shows only at a later step (pop, state, a memory read) charged to that step's rules, so no mutant fails it alone";
const QUEUE_INIT =
  "no mutant yet; queue.initialize's answer is charged to every rule of queue.initialize (ready, size, align, memory, order, inactive, max size): no per-step rules there";
const WHOLE_CASE = (c: string): string =>
  `no mutant yet; in ${c} a difference is charged to every rule of the case (no per-step rules there), so a mutant would fail them all`;

/**
 * Every MUST/SAFETY rule the suite checks and no mutant `breaks`, with why not. With MUTANTS it
 * covers each such rule exactly once (conformance/mutants.test.ts prints the table and fails
 * on a rule in neither, in both, or no longer checked).
 */
const PACKED_POP =
  "no mutant yet; a packed.pop answer (id, head, wrap, slots, walk) is checked for PVQ-AVAIL, PVQ-CHAIN-NEXT, PVQ-BUFFER-ID, PVQ-POP-ID, PVQ-POP-ADVANCE, PVQ-WRAP, PVQ-INDIRECT and PVQ-DESC-LAYOUT at once";
const PACKED_RING_READ =
  "no mutant of its own; the ring read back after packed.addUsed / packed.publish checks it with the other rules of that write (packed-used-id-from-slot and packed-wrap-not-flipped fail it beside theirs)";
const PACKED_HOSTILE =
  "no mutant yet; in packed.hostile a pop answer is charged to every walk-limit rule at once (PVQ-AVAIL, PVQ-POP-ID, PVQ-CHAIN-LIMIT, PVQ-INDIRECT-LEN, PVQ-INDIRECT-IN-CHAIN, PVQ-LEN-U32, PVQ-GUEST-INPUT)";
const PACKED_INIT =
  "no mutant yet; packed.initialize's answer is charged to every rule of packed.initialize (ready, size, align, memory, order, inactive, max size): no per-step rules there";
const PACKED_RESET =
  "no mutant yet; packed.reset charges a refusal of the inactive queue to PVQ-INACTIVE, initialize to PVQ-INIT-FRESH and the rest to PVQ-RESET";
const PACKED_NOTIFY =
  "no mutant yet; the answer and the Device Area read after it are charged to this rule alone";

export const NO_MUTANT: Readonly<Record<string, string>> = {
  "PVQ-AVAIL": PACKED_POP,
  "PVQ-BUFFER-ID": PACKED_POP,
  "PVQ-CHAIN-NEXT": PACKED_POP,
  "PVQ-POP-ADVANCE": PACKED_POP,
  "PVQ-POP-ID": PACKED_POP,
  "PVQ-INDIRECT": PACKED_POP,
  "PVQ-DESC-LAYOUT": `${PACKED_POP} (the ring read after addUsed is PVQ-ADD-USED's, which names the offsets it writes)`,
  "PVQ-IN-ORDER": PACKED_RING_READ,
  "PVQ-PUBLISH-USED": PACKED_RING_READ,
  "PVQ-USED-FLAGS": PACKED_RING_READ,
  "PVQ-CHAIN-LIMIT": PACKED_HOSTILE,
  "PVQ-INDIRECT-LEN": PACKED_HOSTILE,
  "PVQ-INDIRECT-IN-CHAIN": PACKED_HOSTILE,
  "PVQ-LEN-U32": PACKED_HOSTILE,
  "PVQ-GUEST-INPUT": PACKED_HOSTILE,
  "PVQ-INIT-READY": PACKED_INIT,
  "PVQ-INIT-SIZE": PACKED_INIT,
  "PVQ-INIT-ALIGN": PACKED_INIT,
  "PVQ-INIT-MEMORY": PACKED_INIT,
  "PVQ-INIT-ORDER": PACKED_INIT,
  "PVQ-MAX-SIZE": PACKED_INIT,
  "PVQ-INACTIVE": PACKED_RESET,
  "PVQ-INIT-FRESH": PACKED_RESET,
  "PVQ-RESET": PACKED_RESET,
  "PVQ-UNDO-POP":
    "no mutant yet; packed.undoPop answers null: a bug shows only at a later pop or state, charged to that step's rules",
  "PVQ-NOTIFY-DEVICE": PACKED_NOTIFY,
  "PVQ-TRY-ENABLE": PACKED_NOTIFY,
  "PVQ-DEVICE-ACCESS":
    "no mutant yet; the final read-back of memory outside the ring and the Device Area is charged to it alone",
  "MEM-RANGE-ONE-REGION": WHOLE_CASE("memory.access"),
  "MEM-ADDR-U64": WHOLE_CASE("memory.access"),
  "VQ-LAYOUT": POP_STEP,
  "VQ-LEN": POP_STEP,
  "VQ-POP-EMPTY": POP_STEP,
  "VQ-POP-ADVANCE": POP_STEP,
  "VQ-UNDO-POP": AFTER_EFFECT,
  "VQ-ADD-USED":
    "no mutant yet; addUsed's element is read back by a memory.read that also checks VQ-LAYOUT (used-slot-from-guest fails both)",
  "VQ-PUBLISH-USED": "no mutant yet; its publish step and used.idx read cite it alone",
  "VQ-EVENT-IDX":
    "enableNotifSuppression is configure's eventIdx argument: it shows in queue.state, whose answer is charged to every setup rule of queue.ops",
  "VQ-TRY-ENABLE-NOTIFICATION": WHOLE_CASE("queue.ops's tryEnableNotification step"),
  "VQ-INACTIVE":
    "no mutant yet; refusals of an inactive queue cite it alone (NotReady), but an op that touches memory shows in reads charged to the case's rules",
  "VQ-INIT-READY": QUEUE_INIT,
  "VQ-INIT-SIZE": QUEUE_INIT,
  "VQ-INIT-ALIGN": QUEUE_INIT,
  "VQ-INIT-MEMORY": QUEUE_INIT,
  "VQ-INIT-ORDER": QUEUE_INIT,
  "VQ-MAX-SIZE": QUEUE_INIT,
  "CHAIN-DESC-LAYOUT": WHOLE_CASE("chain.walk"),
  "CHAIN-RW-SPLIT": WHOLE_CASE("chain.walk"),
  "CHAIN-ADDR-U64": WHOLE_CASE("chain.walk"),
  "CHAIN-INDIRECT":
    "implied: indirect-aligned breaks how an indirect table is walked, but only for unaligned tables (CHAIN-INDIRECT-UNALIGNED); no mutant yet of aligned ones",
  "CHAIN-INDIRECT-LEN": WHOLE_CASE("chain.hostile-tables"),
  "CHAIN-INDIRECT-NESTED": WHOLE_CASE("chain.hostile-tables"),
  "VQ-GUEST-INPUT": WHOLE_CASE("chain.hostile-tables"),
  "CHAIN-TTL": WHOLE_CASE("chain.hostile"),
  "CHAIN-MEMORY": WHOLE_CASE("chain.hostile"),
  "IOV-READ-LEN": WHOLE_CASE("iovec.read"),
  "IOV-SEG-MEMORY": WHOLE_CASE("iovec.read and iovec.write"),
  "IOV-OVERLAP-ORDER": WHOLE_CASE("iovec.read and iovec.write"),
  "IOV-CHAIN-END": WHOLE_CASE("iovec.read"),
  "IOV-CHECK-ORDER": WHOLE_CASE("iovec.read"),
  "IOV-WRITE-LEN": WHOLE_CASE("iovec.write"),
  "IOV-DEQUE-CAPACITY": WHOLE_CASE("iovec.write"),
  "IOV-APPEND-RESULT": WHOLE_CASE("iovec.write"),
  "USB-HDR-LAYOUT": WHOLE_CASE("usb.build (and usb.parse's complete transfers)"),
  "USB-HDR-TYPES":
    "no mutant yet; usb.parse's complete transfers check it with USB-HDR-LAYOUT and USB-PARSE-STOP",
  "USB-PARSE-STOP":
    "no mutant yet; usb.parse's complete transfers check it with USB-HDR-LAYOUT and USB-HDR-TYPES",
  "USB-PARSE-TYPE": "no mutant yet; runs that stop on UnknownPacketType cite it alone",
  "USB-PARSE-SHORT": "no mutant yet; runs that stop on InsufficientData cite it alone",
  "USB-PARSE-MAGIC": "no mutant yet; runs that stop on InvalidMagic cite it alone",
  "USB-PARSE-BOUNDS":
    "usb-payload-past-buffer breaks it beside USB-PARSE-PAYLOAD-LEN (one answer checks both)",
  "USB-BUILD-TOO-BIG": WHOLE_CASE("usb.build"),
  "USB-BUILDER-TAKE": WHOLE_CASE("usb.build"),
  "VSOCK-TX-EMPTY": WHOLE_CASE("vsock.tx (but for its single-descriptor runs)"),
  "VSOCK-HDR-LAYOUT": WHOLE_CASE("vsock.tx (but for its single-descriptor runs)"),
  "VSOCK-BOUNDS": WHOLE_CASE("vsock.tx and vsock.rx"),
  "VSOCK-RX-ORDER": WHOLE_CASE("vsock.rx"),
  "VSOCK-RX-DATA-WRITABLE": WHOLE_CASE("vsock.rx"),
  "NET-CFG-STATUS":
    "no mutant yet; the status field read cites it alone (other reads over it are NET-CFG-LAYOUT's)",
  "NET-CFG-MTU": "no mutant yet; a refused MTU cites it alone",
  "NET-CFG-MAC": "no mutant yet; a refused MAC cites it alone",
  "NET-CFG-PAST-END":
    "no mutant yet; reads past byte 12 cite it (with NET-CFG-LAYOUT when they start inside)",
  "NET-HDR-LAYOUT": WHOLE_CASE("net.header"),
  "NET-HDR-LEN": WHOLE_CASE("net.header and net.tx"),
  "NET-TX-GATHER": WHOLE_CASE("net.tx"),
  "NET-TX-HDR-STRIP": WHOLE_CASE("net.tx"),
  "NET-TX-SHORT": WHOLE_CASE("net.tx"),
  "NET-TX-MAX": WHOLE_CASE("net.tx"),
  "NET-TX-CHAIN-ERROR": WHOLE_CASE("net.tx"),
  "NET-TX-USED-LEN": WHOLE_CASE("net.tx"),
  "NET-RX-USED-LEN": WHOLE_CASE("net.rx"),
  "NET-RX-WRITABLE-ONLY": WHOLE_CASE("net.rx"),
  "NET-RX-ORDER": WHOLE_CASE("net.rx"),
  "NET-RX-NO-ROOM": WHOLE_CASE("net.rx"),
};
