/*
 * LD_PRELOAD shim for the benchmarks: every TCP socket a program connect()s or accept()s gets
 * TCP_NODELAY, so that DMTF's spdm-emu programs (which leave Nagle on and send each frame-header
 * field with its own send()) can be timed without the Nagle/delayed-ACK stalls. Their code is
 * untouched; tools/bench.ts compiles this file into a temporary directory at run time.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd) {
  int one = 1;
  /* Fails harmlessly on anything that is not a TCP socket. */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  static int (*real)(int, const struct sockaddr *, socklen_t);
  if (!real) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
  int rc = real(fd, addr, len);
  if (rc == 0) nodelay(fd);
  return rc;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len) {
  static int (*real)(int, struct sockaddr *, socklen_t *);
  if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
  int rc = real(fd, addr, len);
  if (rc >= 0) nodelay(rc);
  return rc;
}
