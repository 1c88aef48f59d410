/* httpov's preload library for povray: its idle polls cut short (httpov/worker/waits.py builds and checks it).
 *
 * POV-Ray 3.7's front end and back end pass messages through queues that each side polls: condition waits
 * that time out after 50 ms and sleeps of 10-100 ms. A one-frame render of a trivial scene spends about 0.7 s
 * in them and 0.25 s a frame more, with a few milliseconds of CPU. Here a timed wait of at most POLL_MAX_NS
 * ends as a timeout sooner, and a sleep of at most SLEEP_MAX_NS is shorter: the caller polls its queue again
 * sooner, as it would have later. Each thread's polls start at POLL_NS and double with every one in a row
 * that found nothing (a condition wait that ended by timeout; every sleep), back to povray's own length after
 * five: while povray starts and between frames its polls find work at once, and during a long render its
 * threads poll as rarely as without this library (2 ms polls throughout cost about 24 ms of CPU a second;
 * these, about what povray's own do: measured). A condition wait that is woken starts its thread at POLL_NS
 * again. Longer timed waits are povray's real timeouts and are left alone (povray 3.7.0.10 crashes when those
 * end early: measured), and a wait never ends as a wake-up that did not happen (povray 3.7.0.10 crashes on
 * those too). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <time.h>

#define POLL_NS 2000000LL        /* 2 ms: a thread's first poll */
#define BACKOFF_MAX 5            /* at most POLL_NS << 5 = 64 ms: povray's own polls are shorter */
#define POLL_MAX_NS 60000000LL   /* 60 ms */
#define SLEEP_MAX_NS 250000000LL /* 250 ms */

typedef int (*timedwait_fn)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
typedef int (*nanosleep_fn)(const struct timespec *, struct timespec *);

/* nanoseconds, saturated so that a far deadline (a year 2262 or later) cannot overflow */
static long long nanos(const struct timespec *t) {
    if (t->tv_sec > 9000000000LL) return 9000000000LL * 1000000000LL;
    return t->tv_sec * 1000000000LL + t->tv_nsec;
}

/* this thread's poll: POLL_NS doubled once for each of its last polls in a row that found nothing */
static __thread int idle;
static long long poll_ns(void) { return POLL_NS << (idle < BACKOFF_MAX ? idle : BACKOFF_MAX); }

static struct timespec at(long long ns) {
    struct timespec t = {ns / 1000000000LL, ns % 1000000000LL};
    return t;
}

int pthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline) {
    static timedwait_fn real;
    if (!real) real = (timedwait_fn)dlvsym(RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
    if (!real) real = (timedwait_fn)dlsym(RTLD_NEXT, "pthread_cond_timedwait");
    /* The condition's clock is not known here: a deadline past 2001 is on CLOCK_REALTIME, an earlier one on
     * CLOCK_MONOTONIC (the clock boost gives povray's conditions). */
    struct timespec now;
    clock_gettime(deadline->tv_sec > 1000000000 ? CLOCK_REALTIME : CLOCK_MONOTONIC, &now);
    long long left = nanos(deadline) - nanos(&now), poll = poll_ns();
    if (left <= poll || left > POLL_MAX_NS) return real(cond, mutex, deadline);
    struct timespec sooner = at(nanos(&now) + poll);
    int result = real(cond, mutex, &sooner);
    idle = result == 0 ? 0 : idle + 1;  /* woken: something is going on; a timeout: nothing was */
    return result;
}

int nanosleep(const struct timespec *request, struct timespec *remaining) {
    static nanosleep_fn real;
    if (!real) real = (nanosleep_fn)dlsym(RTLD_NEXT, "nanosleep");
    long long want = nanos(request), poll = poll_ns();
    if (want <= poll || want > SLEEP_MAX_NS) return real(request, remaining);
    idle++;
    struct timespec shorter = at(poll);
    return real(&shorter, remaining);  /* interrupted: what is left of the shorter sleep */
}
