/**
 * The vhost-user protocol (QEMU docs/interop/vhost-user.rst): wire vocabulary, the typed
 * errors a message or a session can break, and the rules (VU-*) with the section of
 * vhost-user.rst they come from. impl/vhost-user encodes and decodes with these constants
 * and returns these errors; properties/vhost-user*.test.ts cite the ids.
 *
 * All numbers are little-endian on the wire here (the document says "machine native byte
 * order"; every host this runs on is little-endian).
 */
import { featureBit } from "../wire/features.ts";
import { rule } from "./result.ts";

// ---- header

export const HEADER_SIZE = 12;
export const VERSION = 0x1;
export const VERSION_MASK = 0x3;
export const FLAG_REPLY = 1 << 2;
export const FLAG_NEED_REPLY = 1 << 3;
/** Largest payload accepted: a full memory table is 264 bytes, a config message 268. */
export const MAX_PAYLOAD = 4096;
/** VHOST_MEMORY_BASELINE_NREGIONS */
export const MAX_REGIONS = 8;
/** VHOST_USER_MAX_CONFIG_SIZE */
export const MAX_CONFIG_SIZE = 256;
export const CONFIG_HEADER_SIZE = 12;
export const REGION_SIZE = 32;
export const VRING_ADDR_SIZE = 40;
/** SET_VRING_KICK/CALL/ERR payload: bits 0-7 ring index, bit 8 "no fd" (VHOST_USER_VRING_NOFD_MASK). */
export const VRING_INDEX_MASK = 0xff;
export const VRING_NOFD = 0x100;
/** VHOST_VRING_F_LOG in a vring address's flags. */
export const VRING_F_LOG = 1;

// ---- front-end requests

export const Req = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  CREATE_CRYPTO_SESSION: 26,
  CLOSE_CRYPTO_SESSION: 27,
  POSTCOPY_ADVISE: 28,
  POSTCOPY_LISTEN: 29,
  POSTCOPY_END: 30,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
} as const;
export type RequestName = keyof typeof Req;

const NAMES: Record<number, RequestName> = Object.fromEntries(
  Object.entries(Req).map(([k, v]) => [v, k as RequestName]),
) as Record<number, RequestName>;

/** The request's name, or `REQUEST_<n>` for a number the protocol does not define. */
export const requestName = (request: number): string => NAMES[request] ?? `REQUEST_${request}`;
export const isKnownRequest = (request: number): boolean => NAMES[request] !== undefined;

// ---- feature bits

/** VHOST_USER_F_PROTOCOL_FEATURES: a virtio feature bit (30) the back-end offers to say it speaks protocol features. */
export const F_PROTOCOL_FEATURES = 30;
/** VHOST_F_LOG_ALL */
export const F_LOG_ALL = 26;

export const ProtocolFeature = {
  MQ: 0,
  LOG_SHMFD: 1,
  RARP: 2,
  REPLY_ACK: 3,
  MTU: 4,
  BACKEND_REQ: 5,
  CROSS_ENDIAN: 6,
  CRYPTO_SESSION: 7,
  PAGEFAULT: 8,
  CONFIG: 9,
  BACKEND_SEND_FD: 10,
  HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12,
  RESET_DEVICE: 13,
  INBAND_NOTIFICATIONS: 14,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
} as const;

/** A feature bit as a mask: wire/features.ts's featureBit under the name this protocol's code uses. */
export const bit = featureBit;

// ---- payload layouts

/** What a message's payload is, by request and direction (vhost-user.rst "Front-end message types"). */
export type Layout = "empty" | "u64" | "state" | "addr" | "memory" | "config" | "log" | "region";

interface RequestLayout {
  readonly request: Layout;
  readonly reply: Layout | null;
}

const L = (request: Layout, reply: Layout | null = null): RequestLayout => ({ request, reply });

/** Payload layouts of the requests this codec knows; the rest are UnsupportedRequest. */
export const LAYOUTS: Partial<Record<number, RequestLayout>> = {
  [Req.GET_FEATURES]: L("empty", "u64"),
  [Req.SET_FEATURES]: L("u64"),
  [Req.SET_OWNER]: L("empty"),
  [Req.RESET_OWNER]: L("empty"),
  // The postcopy reply (a memory table) is not supported: a reply is REPLY_ACK's u64.
  [Req.SET_MEM_TABLE]: L("memory"),
  [Req.SET_LOG_BASE]: L("log", "u64"),
  [Req.SET_LOG_FD]: L("empty"),
  [Req.SET_VRING_NUM]: L("state"),
  [Req.SET_VRING_ADDR]: L("addr"),
  [Req.SET_VRING_BASE]: L("state"),
  [Req.GET_VRING_BASE]: L("state", "state"),
  [Req.SET_VRING_KICK]: L("u64"),
  [Req.SET_VRING_CALL]: L("u64"),
  [Req.SET_VRING_ERR]: L("u64"),
  [Req.GET_PROTOCOL_FEATURES]: L("empty", "u64"),
  [Req.SET_PROTOCOL_FEATURES]: L("u64"),
  [Req.GET_QUEUE_NUM]: L("empty", "u64"),
  [Req.SET_VRING_ENABLE]: L("state"),
  [Req.SEND_RARP]: L("u64"),
  [Req.NET_SET_MTU]: L("u64"),
  [Req.SET_BACKEND_REQ_FD]: L("empty"),
  [Req.SET_VRING_ENDIAN]: L("state"),
  [Req.GET_CONFIG]: L("config", "config"),
  [Req.SET_CONFIG]: L("config"),
  [Req.RESET_DEVICE]: L("empty"),
  [Req.VRING_KICK]: L("state"),
  [Req.GET_MAX_MEM_SLOTS]: L("empty", "u64"),
  [Req.ADD_MEM_REG]: L("region"),
  [Req.REM_MEM_REG]: L("region"),
  [Req.SET_STATUS]: L("u64"),
  [Req.GET_STATUS]: L("empty", "u64"),
};

/** The requests whose reply is the REPLY_ACK u64 when NEED_REPLY is set (no explicit reply body). */
export const hasExplicitReply = (request: number): boolean =>
  request === Req.GET_FEATURES ||
  request === Req.GET_PROTOCOL_FEATURES ||
  request === Req.GET_VRING_BASE ||
  request === Req.GET_QUEUE_NUM ||
  request === Req.GET_CONFIG ||
  request === Req.GET_MAX_MEM_SLOTS ||
  request === Req.GET_STATUS;

/** A SET_MEM_TABLE / ADD_MEM_REG region, exactly as sent (u64 fields). */
export interface MemoryRegionDesc {
  readonly guestAddr: bigint;
  readonly size: bigint;
  readonly userAddr: bigint;
  readonly mmapOffset: bigint;
}

export type Body =
  | { readonly _tag: "Empty" }
  | { readonly _tag: "U64"; readonly value: bigint }
  | { readonly _tag: "VringState"; readonly index: number; readonly num: number }
  | {
      readonly _tag: "VringAddr";
      readonly index: number;
      readonly flags: number;
      readonly desc: bigint;
      readonly used: bigint;
      readonly avail: bigint;
      readonly log: bigint;
    }
  | { readonly _tag: "MemoryTable"; readonly regions: readonly MemoryRegionDesc[] }
  | { readonly _tag: "SingleRegion"; readonly region: MemoryRegionDesc }
  | {
      readonly _tag: "Config";
      readonly offset: number;
      readonly flags: number;
      /** `size` on the wire is data.length. */
      readonly data: Uint8Array;
    }
  | { readonly _tag: "Log"; readonly size: bigint; readonly offset: bigint };

export interface Message {
  readonly request: number;
  /** The whole flags word (version, REPLY, NEED_REPLY). */
  readonly flags: number;
  readonly body: Body;
  /** Descriptors carried with the message (SCM_RIGHTS), in order. */
  readonly fds: readonly number[];
}

export type Direction = "request" | "reply";

/** How many fds a front-end request must carry, given its body (VU-FDS). */
export const expectedFds = (request: number, body: Body): number | "zero-or-one" => {
  switch (request) {
    case Req.SET_MEM_TABLE:
      return body._tag === "MemoryTable" ? body.regions.length : 0;
    case Req.SET_VRING_KICK:
    case Req.SET_VRING_CALL:
    case Req.SET_VRING_ERR:
      return body._tag === "U64" && (body.value & BigInt(VRING_NOFD)) !== 0n ? 0 : 1;
    case Req.SET_LOG_BASE:
    case Req.SET_LOG_FD:
    case Req.SET_BACKEND_REQ_FD:
    case Req.ADD_MEM_REG:
      return 1;
    case Req.REM_MEM_REG:
      return "zero-or-one";
    default:
      return 0;
  }
};

// ---- errors

export type CodecError =
  | { readonly _tag: "UnsupportedVersion"; readonly request: number; readonly flags: number }
  | {
      readonly _tag: "ReplyFlagMismatch";
      readonly request: number;
      readonly flags: number;
      readonly direction: Direction;
    }
  | { readonly _tag: "PayloadTooLarge"; readonly request: number; readonly size: number }
  | { readonly _tag: "UnknownRequest"; readonly request: number }
  | { readonly _tag: "UnsupportedRequest"; readonly request: number }
  | {
      readonly _tag: "BadPayloadSize";
      readonly request: number;
      readonly size: number;
      readonly expected: number;
    }
  | { readonly _tag: "TooManyRegions"; readonly count: number }
  | { readonly _tag: "ConfigTooLarge"; readonly size: number }
  | {
      readonly _tag: "FdCountMismatch";
      readonly request: number;
      readonly expected: number;
      readonly actual: number;
    };

/** What a back-end session refuses (besides codec errors); the connection is then closed. */
export type SessionError =
  | CodecError
  | { readonly _tag: "TruncatedMessage"; readonly got: number; readonly wanted: number }
  | { readonly _tag: "FdsTruncated" }
  | {
      readonly _tag: "RingIndexOutOfRange";
      readonly request: number;
      readonly index: number;
      readonly rings: number;
    }
  | { readonly _tag: "RingSizeInvalid"; readonly index: number; readonly num: number; readonly max: number }
  | { readonly _tag: "EmptyRegion"; readonly guestAddr: bigint }
  | { readonly _tag: "RegionOutOfRange"; readonly guestAddr: bigint; readonly size: bigint }
  | {
      readonly _tag: "OverlappingRegions";
      readonly first: bigint;
      readonly second: bigint;
      readonly space: "guest" | "user";
    }
  | {
      readonly _tag: "MapFailed";
      readonly guestAddr: bigint;
      readonly errno: number;
      readonly message: string;
    }
  | {
      readonly _tag: "RegionBeyondFd";
      readonly guestAddr: bigint;
      readonly end: bigint;
      readonly fileSize: bigint;
    }
  | {
      readonly _tag: "RingAddressUnmapped";
      readonly index: number;
      readonly ring: "desc" | "avail" | "used";
      readonly userAddr: bigint;
    }
  | { readonly _tag: "FeaturesNotOffered"; readonly acked: bigint; readonly offered: bigint }
  | { readonly _tag: "FeaturesRejected"; readonly acked: bigint; readonly reason: string }
  | { readonly _tag: "ProtocolFeaturesNotOffered"; readonly acked: bigint; readonly offered: bigint }
  | { readonly _tag: "ProtocolFeatureNotNegotiated"; readonly request: number; readonly feature: number }
  | { readonly _tag: "KickPollingUnsupported"; readonly index: number }
  | { readonly _tag: "DeviceActivateFailed"; readonly reason: string }
  | { readonly _tag: "SocketError"; readonly call: string; readonly errno: number };

// ---- rules

const DOC = "QEMU docs/interop/vhost-user.rst";

export const RULES = [
  rule(
    "VU-HDR-VERSION",
    `${DOC} Header`,
    "The lower 2 bits of flags are the version, 0x1; another version is refused.",
  ),
  rule(
    "VU-HDR-REPLY-FLAG",
    `${DOC} Header`,
    "Bit 2 of flags (reply) is set on every reply from the back-end and on nothing else.",
  ),
  rule(
    "VU-HDR-SIZE",
    `${DOC} Header, Payload`,
    "size is the payload's length; a payload larger than any layout (4096 here) is refused before it is read.",
  ),
  rule(
    "VU-PAYLOAD-SIZE",
    `${DOC} Payload`,
    "A payload has exactly the size of its request's layout (u64 8, vring state 8, vring address 40, memory table 8 + 32 per region, config 12 + size, log 16, single region 40).",
  ),
  rule(
    "VU-REQ-KNOWN",
    `${DOC} Front-end message types`,
    "A request number the protocol does not define is refused.",
  ),
  rule(
    "VU-REQ-GATED",
    `${DOC} Communication, Protocol features`,
    "A request gated by a protocol feature the back-end did not offer is refused (UnsupportedRequest or ProtocolFeatureNotNegotiated).",
  ),
  rule(
    "VU-FDS",
    `${DOC} Communication`,
    "SET_MEM_TABLE carries one fd per region; SET_VRING_KICK/CALL/ERR carry one fd unless bit 8 (no fd) is set; requests without fds carry none. Fds missing or extra are refused and every received fd is closed.",
  ),
  rule(
    "VU-ROUNDTRIP",
    `${DOC} Message Specification`,
    "Encoding a message and decoding the bytes gives the same request, flags, payload and fds, in both directions.",
  ),
  rule(
    "VU-FEATURES-PROTOCOL-BIT",
    `${DOC} Communication`,
    "GET_FEATURES offers bit 30 (VHOST_USER_F_PROTOCOL_FEATURES); GET/SET_PROTOCOL_FEATURES work before SET_FEATURES.",
  ),
  rule(
    "VU-FEATURES-SUBSET",
    `${DOC} VHOST_USER_SET_FEATURES`,
    "SET_FEATURES acknowledges only offered bits (bit 30 is the protocol's and is not given to the device).",
  ),
  rule(
    "VU-PROTOCOL-FEATURES-SUBSET",
    `${DOC} VHOST_USER_SET_PROTOCOL_FEATURES`,
    "SET_PROTOCOL_FEATURES enables only offered protocol features.",
  ),
  rule(
    "VU-REPLY-ACK",
    `${DOC} VHOST_USER_PROTOCOL_F_REPLY_ACK`,
    "With REPLY_ACK negotiated and need_reply set, a request without an explicit reply is answered with a u64: 0 on success, non-zero on failure.",
  ),
  rule(
    "VU-CONFIG",
    `${DOC} VHOST_USER_GET_CONFIG`,
    "GET_CONFIG (only with PROTOCOL_F_CONFIG) is answered with the same offset and size and the device's config bytes; a zero-length payload signals an error.",
  ),
  rule("VU-MEM-MAX-REGIONS", `${DOC} Memory regions description`, "A memory table has at most 8 regions."),
  rule(
    "VU-MEM-MAP",
    `${DOC} Memory access, VHOST_USER_SET_MEM_TABLE`,
    "Every region is mapped from its fd at its mmap offset and becomes guest memory at its guest address; a region that cannot be mapped, or reaches past the end of its fd (touching it would fault the back-end), is refused and nothing stays mapped.",
  ),
  rule(
    "VU-MEM-OVERLAP",
    `${DOC} Memory access`,
    "Regions must not overlap, neither in guest addresses nor in user addresses (an address would map to two places).",
  ),
  rule(
    "VU-MEM-REPLACE",
    `${DOC} VHOST_USER_SET_MEM_TABLE`,
    "A new memory table replaces the old one: the old mappings are released once the rings no longer use them.",
  ),
  rule(
    "VU-RING-INDEX",
    `${DOC} Multiple queue support`,
    "A ring index names one of the device's rings; another index is refused.",
  ),
  rule(
    "VU-RING-NUM",
    `${DOC} VHOST_USER_SET_VRING_NUM`,
    "A ring size is a power of two no larger than the device's maximum.",
  ),
  rule(
    "VU-RING-ADDR-TRANSLATE",
    `${DOC} Memory access, A vring address description`,
    "Ring addresses are front-end user addresses, translated through the region that holds them to guest addresses; an address in no region is refused.",
  ),
  rule(
    "VU-RING-START",
    `${DOC} Ring states`,
    "A ring starts when its kick fd is set (the back-end then processes it); each ring is initialized stopped.",
  ),
  rule(
    "VU-RING-ENABLE",
    `${DOC} Ring states`,
    "With PROTOCOL_FEATURES negotiated a ring starts disabled and SET_VRING_ENABLE (which may come before the ring is configured) enables it; without, it starts enabled. A disabled ring's kicks are not processed.",
  ),
  rule(
    "VU-RING-STOP",
    `${DOC} Ring states, VHOST_USER_GET_VRING_BASE`,
    "GET_VRING_BASE stops the ring and replies with the index of the next available entry the back-end would process.",
  ),
  rule(
    "VU-RING-BASE",
    `${DOC} VHOST_USER_SET_VRING_BASE`,
    "SET_VRING_BASE sets where the back-end resumes in the available ring; the used index resumes from the used ring.",
  ),
  rule(
    "VU-CALL",
    `${DOC} VHOST_USER_SET_VRING_CALL`,
    "Used buffers are signalled by writing the ring's call eventfd.",
  ),
  rule(
    "VU-DISCONNECT",
    `${DOC} Communication`,
    "On a disconnect or a refused message the connection is closed and every fd, mapping and ring it set up is released; the back-end then accepts a new connection.",
  ),
];
