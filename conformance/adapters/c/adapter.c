/*
 * Starter adapter for the virtio-lab conformance protocol (docs/conformance-protocol.md), in C
 * with the standard library only:
 *
 *     gcc -O2 -Wall -o adapter conformance/adapters/c/adapter.c
 *     npx tsx sim conform --impl ./adapter
 *
 * It implements hello, reset and memory.* over byte arrays and answers every other op
 * {"_tag":"Unsupported"}, so the suite runs the memory cases and skips the rest. To test your
 * own code, replace the memory functions (or add ops in dispatch()) with calls into it, and list
 * each op you implement in OPS.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

#define OPS "[\"hello\",\"reset\",\"memory.create\",\"memory.read\",\"memory.write\"]"
#define MAX_TOTAL (64u << 20) /* what this adapter will allocate (more: ResourceLimit) */
#define MAX_REGIONS 64

/* ---- a small JSON reader: enough for requests (objects, arrays, strings, numbers) ------- */

enum kind { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct json {
  enum kind kind;
  char *str;            /* J_STR: the text (no escapes expected in requests); J_NUM: the literal */
  struct json *items;   /* J_ARR / J_OBJ children */
  char **keys;          /* J_OBJ keys */
  size_t len;
  int boolean;
};

static const char *p;

static void skip(void) { while (*p && isspace((unsigned char)*p)) p++; }

static int parse(struct json *out);

static char *parse_string(void) {
  if (*p != '"') return NULL;
  const char *start = ++p;
  while (*p && *p != '"') {
    if (*p == '\\' && p[1]) p++;
    p++;
  }
  if (*p != '"') return NULL;
  size_t n = (size_t)(p - start);
  char *s = malloc(n + 1);
  memcpy(s, start, n);
  s[n] = 0;
  p++;
  return s;
}

static int parse(struct json *out) {
  memset(out, 0, sizeof *out);
  skip();
  if (*p == '{' || *p == '[') {
    int obj = *p == '{';
    out->kind = obj ? J_OBJ : J_ARR;
    p++;
    skip();
    size_t cap = 0;
    if (*p == (obj ? '}' : ']')) { p++; return 1; }
    for (;;) {
      if (out->len == cap) {
        cap = cap ? 2 * cap : 4;
        out->items = realloc(out->items, cap * sizeof *out->items);
        if (obj) out->keys = realloc(out->keys, cap * sizeof *out->keys);
      }
      if (obj) {
        skip();
        char *k = parse_string();
        if (!k) return 0;
        out->keys[out->len] = k;
        skip();
        if (*p++ != ':') return 0;
      }
      if (!parse(&out->items[out->len])) return 0;
      out->len++;
      skip();
      if (*p == ',') { p++; continue; }
      if (*p == (obj ? '}' : ']')) { p++; return 1; }
      return 0;
    }
  }
  if (*p == '"') { out->kind = J_STR; out->str = parse_string(); return out->str != NULL; }
  if (!strncmp(p, "true", 4)) { out->kind = J_BOOL; out->boolean = 1; p += 4; return 1; }
  if (!strncmp(p, "false", 5)) { out->kind = J_BOOL; p += 5; return 1; }
  if (!strncmp(p, "null", 4)) { p += 4; return 1; }
  const char *start = p;
  while (*p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E' || isdigit((unsigned char)*p)) p++;
  if (p == start) return 0;
  out->kind = J_NUM;
  out->str = strndup(start, (size_t)(p - start));
  return 1;
}

static void release(struct json *j) {
  for (size_t i = 0; i < j->len; i++) {
    release(&j->items[i]);
    if (j->keys) free(j->keys[i]);
  }
  free(j->items);
  free(j->keys);
  free(j->str);
}

static const struct json *get(const struct json *obj, const char *key) {
  if (!obj || obj->kind != J_OBJ) return NULL;
  for (size_t i = 0; i < obj->len; i++)
    if (!strcmp(obj->keys[i], key)) return &obj->items[i];
  return NULL;
}

/* A u64 argument: a decimal string or a JSON number of digits. 0 when it is not one. */
static int as_u64(const struct json *j, uint64_t *out) {
  if (!j || (j->kind != J_STR && j->kind != J_NUM) || !j->str || !*j->str || strlen(j->str) > 20) return 0;
  u128 v = 0;
  for (const char *c = j->str; *c; c++) {
    if (!isdigit((unsigned char)*c)) return 0;
    v = v * 10 + (u128)(*c - '0');
  }
  if (v > UINT64_MAX) return 0;
  *out = (uint64_t)v;
  return 1;
}

static int as_u32(const struct json *j, uint32_t *out) {
  uint64_t v;
  if (!j || j->kind != J_NUM || !as_u64(j, &v) || v > UINT32_MAX) return 0;
  *out = (uint32_t)v;
  return 1;
}

/* ---- the session: guest memory as byte arrays (replace with yours) ------------------------- */

struct region { uint64_t base; uint32_t size; uint8_t *bytes; };
static struct region regions[MAX_REGIONS];
static size_t nregions;
static int configured;

static void reset_memory(void) {
  for (size_t i = 0; i < nregions; i++) free(regions[i].bytes);
  nregions = 0;
  configured = 0;
}

static int by_base(const void *a, const void *b) {
  const struct region *x = a, *y = b;
  return x->base < y->base ? -1 : x->base > y->base;
}

/* Returns NULL on success, else the error tag. */
static const char *memory_create(const struct json *args) {
  const struct json *list = get(args, "regions");
  if (!list || list->kind != J_ARR) return "BadRequest";
  if (list->len == 0) return "NoMemoryRegion";
  if (list->len > MAX_REGIONS) return "ResourceLimit";
  struct region next[MAX_REGIONS];
  uint64_t total = 0;
  for (size_t i = 0; i < list->len; i++) {
    uint64_t base;
    uint32_t size;
    if (!as_u64(get(&list->items[i], "base"), &base) || !as_u32(get(&list->items[i], "size"), &size))
      return "BadRequest";
    if (size == 0) return "EmptyRegion";
    if ((u128)base + size > (u128)UINT64_MAX + 1) return "RegionOutOfRange";
    total += size;
    if (total > MAX_TOTAL) return "ResourceLimit";
    next[i].base = base;
    next[i].size = size;
  }
  qsort(next, list->len, sizeof next[0], by_base);
  for (size_t i = 0; i + 1 < list->len; i++)
    if ((u128)next[i].base + next[i].size > next[i + 1].base) return "OverlappingRegions";
  reset_memory();
  for (size_t i = 0; i < list->len; i++) {
    regions[i] = next[i];
    regions[i].bytes = calloc(next[i].size, 1);
  }
  nregions = list->len;
  configured = 1;
  return NULL;
}

/* Checks [addr, addr+len) is covered by touching regions; NULL or the error tag. */
static const char *check_range(uint64_t addr, uint64_t len) {
  if (!configured) return "NotConfigured";
  if ((u128)addr + len > (u128)UINT64_MAX + 1) return "GuestAddressOverflow";
  u128 at = addr, end = (u128)addr + len;
  while (at < end) {
    size_t i = 0;
    while (i < nregions && !(regions[i].base <= at && at < (u128)regions[i].base + regions[i].size)) i++;
    if (i == nregions) return "InvalidGuestAddress";
    at = (u128)regions[i].base + regions[i].size;
  }
  return NULL;
}

/* Copies between guest memory and buf over touching regions (check_range first). */
static void copy(uint64_t addr, uint8_t *buf, uint64_t len, int to_guest) {
  u128 at = addr, end = (u128)addr + len;
  while (at < end) {
    struct region *r = regions;
    while (!(r->base <= at && at < (u128)r->base + r->size)) r++;
    uint64_t off = (uint64_t)(at - r->base);
    uint64_t n = r->size - off;
    if (n > end - at) n = (uint64_t)(end - at);
    if (to_guest) memcpy(r->bytes + off, buf, n);
    else memcpy(buf, r->bytes + off, n);
    buf += n;
    at += n;
  }
}

/* ---- the protocol ------------------------------------------------------------------------- */

static void reply_error(long long id, const char *tag) {
  printf("{\"id\":%lld,\"ok\":false,\"error\":{\"_tag\":\"%s\"}}\n", id, tag);
}

static void dispatch(long long id, const char *op, const struct json *args) {
  if (!strcmp(op, "hello")) {
    printf("{\"id\":%lld,\"ok\":true,\"value\":{\"protocol\":1,\"name\":\"C starter adapter\",\"ops\":%s}}\n", id, OPS);
  } else if (!strcmp(op, "reset")) {
    reset_memory();
    printf("{\"id\":%lld,\"ok\":true,\"value\":null}\n", id);
  } else if (!strcmp(op, "memory.create")) {
    const char *e = memory_create(args);
    if (e) reply_error(id, e);
    else printf("{\"id\":%lld,\"ok\":true,\"value\":null}\n", id);
  } else if (!strcmp(op, "memory.read")) {
    uint64_t addr;
    uint32_t len;
    if (!as_u64(get(args, "addr"), &addr) || !as_u32(get(args, "len"), &len)) return reply_error(id, "BadRequest");
    const char *e = check_range(addr, len);
    if (e) return reply_error(id, e);
    uint8_t *buf = malloc(len ? len : 1);
    copy(addr, buf, len, 0);
    printf("{\"id\":%lld,\"ok\":true,\"value\":{\"data\":\"", id);
    for (uint32_t i = 0; i < len; i++) printf("%02x", buf[i]);
    printf("\"}}\n");
    free(buf);
  } else if (!strcmp(op, "memory.write")) {
    uint64_t addr;
    const struct json *data = get(args, "data");
    if (!as_u64(get(args, "addr"), &addr) || !data || data->kind != J_STR || strlen(data->str) % 2)
      return reply_error(id, "BadRequest");
    size_t len = strlen(data->str) / 2;
    uint8_t *buf = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++) {
      unsigned v;
      if (!isxdigit((unsigned char)data->str[2 * i]) || !isxdigit((unsigned char)data->str[2 * i + 1]) ||
          sscanf(data->str + 2 * i, "%2x", &v) != 1) {
        free(buf);
        return reply_error(id, "BadRequest");
      }
      buf[i] = (uint8_t)v;
    }
    const char *e = check_range(addr, len);
    if (e) reply_error(id, e);
    else {
      copy(addr, buf, len, 1);
      printf("{\"id\":%lld,\"ok\":true,\"value\":null}\n", id);
    }
    free(buf);
  } else {
    reply_error(id, "Unsupported");
  }
}

int main(void) {
  static char line[1 << 22];
  while (fgets(line, sizeof line, stdin)) {
    p = line;
    skip();
    if (!*p) continue;
    struct json req;
    const struct json *id, *op;
    if (!parse(&req) || !(id = get(&req, "id")) || id->kind != J_NUM || !(op = get(&req, "op")) || op->kind != J_STR) {
      reply_error(-1, "BadRequest");
    } else {
      dispatch(atoll(id->str), op->str, get(&req, "args"));
    }
    release(&req);
    fflush(stdout);
  }
  reset_memory();
  return 0;
}
