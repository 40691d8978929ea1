/*
 * vlab-xfer: the guest side of virtio-lab's real-guest transfers (sim/linux). Busybox nc
 * has no AF_VSOCK, so this small static program moves a known byte pattern over a vsock
 * or TCP stream and checks it, printing one result line the host parses:
 *
 *   VLAB-XFER ok proto=vsock mode=echo bytes=N sent=N received=N ms=T
 *   VLAB-XFER fail proto=vsock mode=echo reason=... offset=K
 *
 * Usage:
 *   vlab-xfer connect vsock|tcp ADDR PORT BYTES echo|send|recv
 *     echo: send BYTES of the pattern and read the same bytes back (peer echoes)
 *     send: send BYTES of the pattern, half-close, wait for the peer to close
 *     recv: read until EOF, check every byte is the pattern and that BYTES arrived
 *   vlab-xfer listen vsock|tcp PORT
 *     accept one connection and echo everything back until EOF
 * ADDR is a CID for vsock (2 = the host) and a dotted IPv4 address for tcp.
 *
 * The pattern (also in sim/linux/pattern.ts): byte i of the stream is
 * (i * 131 + (i >> 9)) & 0xff, which does not repeat every 256 bytes, so a dropped,
 * doubled or reordered block shows.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

static unsigned char pattern_at(uint64_t i) { return (unsigned char)((i * 131u + (i >> 9)) & 0xff); }

static void fill(unsigned char *buf, uint64_t off, size_t len) {
  for (size_t k = 0; k < len; k++) buf[k] = pattern_at(off + k);
}

/* The first offset in buf (stream offset off) that is not the pattern, or -1. */
static long long check(const unsigned char *buf, uint64_t off, size_t len) {
  for (size_t k = 0; k < len; k++)
    if (buf[k] != pattern_at(off + k)) return (long long)(off + k);
  return -1;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *g_proto = "?";
static const char *g_mode = "?";

static int fail(const char *reason, long long offset) {
  printf("VLAB-XFER fail proto=%s mode=%s reason=%s offset=%lld errno=%d\n", g_proto, g_mode, reason, offset,
         errno);
  fflush(stdout);
  return 1;
}

static int make_socket(const char *proto) {
  if (strcmp(proto, "vsock") == 0) return socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (strcmp(proto, "tcp") == 0) return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  return -1;
}

static int do_connect(const char *proto, const char *addr, unsigned port) {
  int fd = make_socket(proto);
  if (fd < 0) return -1;
  if (strcmp(proto, "vsock") == 0) {
    struct sockaddr_vm sa;
    memset(&sa, 0, sizeof sa);
    sa.svm_family = AF_VSOCK;
    sa.svm_cid = (unsigned)strtoul(addr, NULL, 10);
    sa.svm_port = port;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return -1;
  } else {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return -1;
  }
  return fd;
}

static int do_listen(const char *proto, unsigned port) {
  int fd = make_socket(proto);
  if (fd < 0) return -1;
  int one = 1;
  if (strcmp(proto, "vsock") == 0) {
    struct sockaddr_vm sa;
    memset(&sa, 0, sizeof sa);
    sa.svm_family = AF_VSOCK;
    sa.svm_cid = VMADDR_CID_ANY;
    sa.svm_port = port;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return -1;
  } else {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return -1;
  }
  if (listen(fd, 1) < 0) return -1;
  printf("VLAB-XFER listening proto=%s port=%u\n", proto, port);
  fflush(stdout);
  return accept4(fd, NULL, NULL, SOCK_CLOEXEC);
}

/* Writes and reads at once (poll) so an echoing peer never deadlocks on full buffers. */
static int run_echo(int fd, uint64_t total) {
  static unsigned char out[CHUNK], in[CHUNK];
  uint64_t sent = 0, received = 0;
  double t0 = now_ms();
  int wr_closed = 0;
  while (received < total) {
    struct pollfd p = {fd, POLLIN, 0};
    if (sent < total) p.events |= POLLOUT;
    if (poll(&p, 1, 30000) <= 0) return fail("timeout", (long long)received);
    if ((p.revents & POLLOUT) && sent < total) {
      size_t n = total - sent < CHUNK ? (size_t)(total - sent) : CHUNK;
      fill(out, sent, n);
      ssize_t w = send(fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN) return fail("send", (long long)sent);
      if (w > 0) sent += (uint64_t)w;
    }
    if (sent == total && !wr_closed) {
      shutdown(fd, SHUT_WR);
      wr_closed = 1;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = recv(fd, in, CHUNK, MSG_DONTWAIT);
      if (r < 0 && errno != EAGAIN) return fail("recv", (long long)received);
      if (r == 0) return fail("eof-early", (long long)received);
      if (r > 0) {
        if (received + (uint64_t)r > total) return fail("too-many-bytes", (long long)total);
        long long bad = check(in, received, (size_t)r);
        if (bad >= 0) return fail("pattern", bad);
        received += (uint64_t)r;
      }
    }
  }
  double ms = now_ms() - t0;
  printf("VLAB-XFER ok proto=%s mode=echo bytes=%llu sent=%llu received=%llu ms=%.1f\n", g_proto,
         (unsigned long long)total, (unsigned long long)sent, (unsigned long long)received, ms);
  fflush(stdout);
  return 0;
}

static int run_send(int fd, uint64_t total) {
  static unsigned char out[CHUNK], in[CHUNK];
  uint64_t sent = 0;
  double t0 = now_ms();
  while (sent < total) {
    size_t n = total - sent < CHUNK ? (size_t)(total - sent) : CHUNK;
    fill(out, sent, n);
    ssize_t w = send(fd, out, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return fail("send", (long long)sent);
    }
    sent += (uint64_t)w;
  }
  shutdown(fd, SHUT_WR);
  /* The peer closes once it has everything; whatever it says first is not checked. */
  for (;;) {
    ssize_t r = recv(fd, in, CHUNK, 0);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail("recv-close", (long long)sent);
    }
  }
  double ms = now_ms() - t0;
  printf("VLAB-XFER ok proto=%s mode=send bytes=%llu sent=%llu received=0 ms=%.1f\n", g_proto,
         (unsigned long long)total, (unsigned long long)sent, ms);
  fflush(stdout);
  return 0;
}

static int run_recv(int fd, uint64_t total) {
  static unsigned char in[CHUNK];
  uint64_t received = 0;
  double t0 = now_ms();
  for (;;) {
    ssize_t r = recv(fd, in, CHUNK, 0);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail("recv", (long long)received);
    }
    long long bad = check(in, received, (size_t)r);
    if (bad >= 0) return fail("pattern", bad);
    received += (uint64_t)r;
  }
  if (received != total) return fail("short", (long long)received);
  double ms = now_ms() - t0;
  printf("VLAB-XFER ok proto=%s mode=recv bytes=%llu sent=0 received=%llu ms=%.1f\n", g_proto,
         (unsigned long long)total, (unsigned long long)received, ms);
  fflush(stdout);
  return 0;
}

static int run_echo_server(int fd) {
  static unsigned char buf[CHUNK];
  uint64_t total = 0;
  for (;;) {
    ssize_t r = recv(fd, buf, CHUNK, 0);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail("recv", (long long)total);
    }
    for (ssize_t off = 0; off < r;) {
      ssize_t w = send(fd, buf + off, (size_t)(r - off), MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        return fail("send", (long long)total);
      }
      off += w;
    }
    total += (uint64_t)r;
  }
  printf("VLAB-XFER ok proto=%s mode=listen bytes=%llu sent=%llu received=%llu ms=0\n", g_proto,
         (unsigned long long)total, (unsigned long long)total, (unsigned long long)total);
  fflush(stdout);
  return 0;
}

static int usage(void) {
  fprintf(stderr,
          "usage: vlab-xfer connect vsock|tcp ADDR PORT BYTES echo|send|recv\n"
          "       vlab-xfer listen vsock|tcp PORT\n");
  return 2;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 7 && strcmp(argv[1], "connect") == 0) {
    g_proto = argv[2];
    g_mode = argv[6];
    uint64_t total = strtoull(argv[5], NULL, 10);
    int fd = do_connect(argv[2], argv[3], (unsigned)strtoul(argv[4], NULL, 10));
    if (fd < 0) return fail("connect", 0);
    if (strcmp(g_mode, "echo") == 0) return run_echo(fd, total);
    if (strcmp(g_mode, "send") == 0) return run_send(fd, total);
    if (strcmp(g_mode, "recv") == 0) return run_recv(fd, total);
    return usage();
  }
  if (argc == 4 && strcmp(argv[1], "listen") == 0) {
    g_proto = argv[2];
    g_mode = "listen";
    int fd = do_listen(argv[2], (unsigned)strtoul(argv[3], NULL, 10));
    if (fd < 0) return fail("listen", 0);
    return run_echo_server(fd);
  }
  return usage();
}
