/*
 * kernelfloor: the cost of a connection-per-request HTTP exchange on
 * loopback with no runtime and no HTTP library: blocking C threads, a
 * fixed request and a fixed answer. Clients connect, write, read until the
 * server closes, and close; server threads accept, read the request, write
 * the answer and close. Prints requests/s, p99 and CPU microseconds per
 * request for the whole process (clients and server together).
 *
 *   cc -O2 -pthread -o /tmp/kernelfloor kernelfloor.c
 *   /tmp/kernelfloor 16 200000        # 16 clients, 200000 requests, 4 server threads
 *   /tmp/kernelfloor serve 18011      # server threads only, for another client
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char req[] = "GET /primary HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
static const char resp[] = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
static int lfd;
static struct sockaddr_in addr;
static long total, next_req;
static long *lat; /* nanoseconds, one per request */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static long now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *server(void *arg) {
	char buf[4096];
	(void)arg;
	for (;;) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0)
			return NULL;
		int one = 1;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		int n = 0;
		while (n < (int)sizeof buf) {
			int m = read(c, buf + n, sizeof buf - n);
			if (m <= 0)
				break;
			n += m;
			if (memmem(buf, n, "\r\n\r\n", 4))
				break;
		}
		write(c, resp, sizeof resp - 1);
		close(c);
	}
}

static void *client(void *arg) {
	char buf[4096];
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&mu);
		long i = next_req++;
		pthread_mutex_unlock(&mu);
		if (i >= total)
			return NULL;
		long t0 = now_ns();
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(c, (struct sockaddr *)&addr, sizeof addr) < 0) {
			perror("connect");
			exit(1);
		}
		write(c, req, sizeof req - 1);
		while (read(c, buf, sizeof buf) > 0)
			;
		close(c);
		lat[i] = now_ns() - t0;
	}
}

static int cmp(const void *a, const void *b) {
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv) {
	int serveOnly = argc > 2 && strcmp(argv[1], "serve") == 0;
	int clients = argc > 1 ? atoi(argv[1]) : 16;
	total = argc > 2 ? atol(argv[2]) : 200000;
	int servers = argc > 3 ? atoi(argv[3]) : 4;
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (serveOnly) {
		int one = 1;
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		addr.sin_port = htons(atoi(argv[2]));
		clients = 0;
		total = 1;
	}
	lat = calloc(total, sizeof *lat);
	if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
		perror("listen");
		return 1;
	}
	socklen_t l = sizeof addr;
	getsockname(lfd, (struct sockaddr *)&addr, &l);
	pthread_t st[64], ct[256];
	for (int i = 0; i < servers; i++)
		pthread_create(&st[i], NULL, server, NULL);
	if (serveOnly) {
		printf("serving on 127.0.0.1:%d\n", ntohs(addr.sin_port));
		fflush(stdout);
		pthread_join(st[0], NULL);
		return 0;
	}
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	long t0 = now_ns();
	for (int i = 0; i < clients; i++)
		pthread_create(&ct[i], NULL, client, NULL);
	for (int i = 0; i < clients; i++)
		pthread_join(ct[i], NULL);
	long el = now_ns() - t0;
	getrusage(RUSAGE_SELF, &r1);
	double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e6 +
		     (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
	double sys = (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e6 + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
	qsort(lat, total, sizeof *lat, cmp);
	printf("requests %ld in %.2f s: %.0f req/s, p50 %.3f ms, p99 %.3f ms, cpu %.1f us/req (system %.1f)\n", total,
	       el / 1e9, total / (el / 1e9), lat[total / 2] / 1e6, lat[total * 99 / 100] / 1e6, cpu / total, sys / total);
	return 0;
}
