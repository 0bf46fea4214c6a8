/* SPDX-License-Identifier: MIT */
/*
 * The session loop: leader and followers.
 *
 * A FUSE request costs its sender two sleeps: it waits for the answer,
 * and the server's thread, woken for the request, had gone to sleep
 * itself. On a virtual machine an idle CPU halts, and waking it again is
 * most of a round trip's 25-40 us. `find` is one request after another,
 * so it pays that cost 2000 times per 1000 directories.
 *
 * So one thread at a time, the leader, reads the device (non-blocking)
 * and answers what it reads itself. After each answer it keeps polling
 * for cfg->spin_us before it sleeps in poll(): the next request of a
 * program walking a tree usually comes within a few microseconds, and
 * finds the leader awake. It polls only while that has been paying
 * (learn()). Handlers that may wait (a store read, another thread's load
 * or lock, a notification) or copy much (a large read) call
 * stampfs_loop_may_block() first: another
 * thread, asleep on a condition variable or started for it (at most
 * cfg->max_threads), becomes the leader, and requests keep being answered
 * in parallel. A thread done with its request leads again if no one does,
 * else sleeps until a leader hands over.
 *
 * Only the leader sleeps on the device, so a request wakes one thread,
 * and only when the leader was not polling. The loop's threads block
 * every signal; a signal that ends the session (fuse_set_signal_handlers())
 * interrupts the calling thread's wait, which then stops the threads and
 * joins them.
 *
 * A handler that waits where it did not say so (a lock or a system call
 * no one thought slow) would hold up every request behind it. So a
 * watchdog thread looks at the leader every WATCH_MS while requests come:
 * a leader found in the same request twice in a row is relieved of its
 * role as stampfs_loop_may_block() would, and finishes its request as a
 * follower. After IDLE_TICKS looks without a request the watchdog sleeps
 * until the next one, so an idle mount stays idle.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

#define LOOP_THREADS_MAX 64
#define WATCH_MS 10
#define IDLE_TICKS 50

/* A hint to the CPU that this is a polling loop. */
#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield" ::: "memory")
#else
#define cpu_relax() __asm__ volatile("" ::: "memory")
#endif

/* A thread of the loop; its fields are atomic, read by the watchdog. */
struct member {
        bool leader;   /* this thread is the leader */
        bool busy;     /* in a request's handler */
        unsigned seq;  /* requests it began */
};

struct loop {
        struct fuse_session *se;
        int fd;      /* the session's device, O_NONBLOCK */
        int wake_fd; /* eventfd: the leader's poll() returns when stopping */
        unsigned max_threads;
        int64_t spin_ns;
        unsigned soon;   /* atomic; see learn() */
        unsigned probes; /* atomic; see spin_pays() */
        pthread_mutex_t lock;
        pthread_cond_t followers; /* a leader is wanted, or stopping */
        sem_t finished;           /* posted when a thread saw the session end */
        bool led;                 /* some thread leads; written under lock, atomic */
        struct member *cur;       /* the leader, if it is in a handler or may be */
        pthread_cond_t watch;     /* wakes the watchdog: stopping, or requests again */
        bool watching;            /* atomic: the watchdog looks (else it sleeps) */
        bool stop;                /* written under lock, read without: atomic */
        unsigned idle; /* followers waiting */
        unsigned n_threads;
        pthread_t threads[LOOP_THREADS_MAX];
        int err; /* the first read error, -errno */
};

static __thread struct loop *t_loop;  /* set in the loop's threads */
static __thread struct member *t_me; /* and this thread's member */

static int64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *worker(void *arg);

static void set_stop_locked(struct loop *L)
{
        __atomic_store_n(&L->stop, true, __ATOMIC_RELAXED);
}

/*
 * Under L->lock. false if no thread could start; a thread done with its
 * request leads then.
 */
static bool spawn_locked(struct loop *L)
{
        if (L->stop || L->n_threads >= L->max_threads)
                return false;
        if (pthread_create(&L->threads[L->n_threads], NULL, worker, L) != 0)
                return false;
        L->n_threads++;
        return true;
}

/*
 * Under L->lock: leader @m gives up its role (or the watchdog takes it).
 * false: no thread takes it now.
 */
static bool hand_over_locked(struct loop *L, struct member *m)
{
        __atomic_store_n(&m->leader, false, __ATOMIC_RELAXED);
        __atomic_store_n(&L->led, false, __ATOMIC_RELAXED);
        L->cur = NULL;
        if (L->idle > 0) {
                pthread_cond_signal(&L->followers);
                return true;
        }
        return spawn_locked(L);
}

bool stampfs_loop_may_block(void)
{
        struct loop *L = t_loop;
        bool other;

        if (!L)
                return false;
        /* A follower while another leads: the common case, without the lock. */
        if (!__atomic_load_n(&t_me->leader, __ATOMIC_RELAXED) &&
            __atomic_load_n(&L->led, __ATOMIC_RELAXED))
                return true;
        pthread_mutex_lock(&L->lock);
        if (__atomic_load_n(&t_me->leader, __ATOMIC_RELAXED))
                other = hand_over_locked(L, t_me);
        else /* handed over already, or relieved: if no one leads, a woken follower will */
                other = L->led || L->idle > 0 || spawn_locked(L);
        pthread_mutex_unlock(&L->lock);
        return other;
}

void stampfs_loop_lock(pthread_mutex_t *m)
{
        if (pthread_mutex_trylock(m) == 0)
                return;
        stampfs_loop_may_block();
        pthread_mutex_lock(m);
}

/*
 * Not fuse_session_exited(): after a signal the threads answer requests
 * until the caller's before_stop() is done.
 */
static bool stopping(struct loop *L)
{
        return __atomic_load_n(&L->stop, __ATOMIC_RELAXED);
}

/*
 * Whether polling pays, learnt from the requests themselves: L->soon
 * estimates (0 to SOON_ONE) how often the next request came within
 * spin_ns of the leader's last answer. A cold read's requests come far
 * apart, while the mount's other threads and tar need the CPUs: polling
 * there only burns them. Below half, the leader sleeps at once, except
 * every PROBE_EVERY-th time, to notice when requests come close again.
 */
#define SOON_ONE 256
#define PROBE_EVERY 8

static void learn(struct loop *L, bool soon)
{
        unsigned p = __atomic_load_n(&L->soon, __ATOMIC_RELAXED);

        p = p - p / 8 + (soon ? SOON_ONE / 8 : 0);
        __atomic_store_n(&L->soon, p, __ATOMIC_RELAXED);
}

static bool spin_pays(struct loop *L)
{
        if (L->spin_ns <= 0)
                return false;
        if (__atomic_load_n(&L->soon, __ATOMIC_RELAXED) >= SOON_ONE / 2)
                return true;
        return __atomic_add_fetch(&L->probes, 1, __ATOMIC_RELAXED) % PROBE_EVERY == 0;
}

/*
 * The leader's wait for one request: > 0 its size, 0 the session ended
 * (unmounted or stopped), -errno a read failed.
 */
static int lead(struct loop *L, struct fuse_buf *buf)
{
        int64_t start = now_ns();
        bool spin = spin_pays(L);

        for (;;) {
                int r;

                if (stopping(L))
                        return 0;
                r = fuse_session_receive_buf(L->se, buf);
                if (r > 0) {
                        if (L->spin_ns > 0)
                                learn(L, now_ns() - start < L->spin_ns);
                        return r;
                }
                if (r == 0) /* ENODEV: unmounted (libfuse ended the session) */
                        return 0;
                if (r == -EINTR)
                        continue;
                if (r != -EAGAIN)
                        return r;
                if (spin && now_ns() - start < L->spin_ns) {
                        cpu_relax();
                        continue;
                }
                spin = false; /* polled long enough: woken now, the next request is not awaited */
                struct pollfd p[2] = {
                        { .fd = L->fd, .events = POLLIN },
                        { .fd = L->wake_fd, .events = POLLIN },
                };
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        return -errno;
        }
}

/* The watchdog, sleeping since requests stopped coming: they come again. */
static void watch_again(struct loop *L)
{
        pthread_mutex_lock(&L->lock);
        if (!__atomic_load_n(&L->watching, __ATOMIC_RELAXED)) {
                __atomic_store_n(&L->watching, true, __ATOMIC_RELAXED);
                pthread_cond_signal(&L->watch);
        }
        pthread_mutex_unlock(&L->lock);
}

static void *watchdog(void *arg)
{
        struct loop *L = arg;
        struct member *seen = NULL;
        unsigned seen_seq = 0, idle = 0;

        pthread_mutex_lock(&L->lock);
        while (!L->stop) {
                struct member *m;
                struct timespec ts;

                if (!__atomic_load_n(&L->watching, __ATOMIC_RELAXED)) {
                        pthread_cond_wait(&L->watch, &L->lock);
                        seen = NULL;
                        idle = 0;
                        continue;
                }
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += WATCH_MS * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                (void)pthread_cond_timedwait(&L->watch, &L->lock, &ts);
                if (L->stop)
                        break;
                m = L->cur;
                if (!m) {
                        seen = NULL;
                        continue;
                }
                unsigned seq = __atomic_load_n(&m->seq, __ATOMIC_RELAXED);
                bool busy = __atomic_load_n(&m->busy, __ATOMIC_RELAXED);
                if (busy && m == seen && seq == seen_seq &&
                    __atomic_load_n(&m->leader, __ATOMIC_RELAXED)) {
                        /* In the same request for a whole look or more: relieved. */
                        hand_over_locked(L, m);
                        seen = NULL;
                        continue;
                }
                idle = !busy && m == seen && seq == seen_seq ? idle + 1 : 0;
                if (idle >= IDLE_TICKS)
                        __atomic_store_n(&L->watching, false, __ATOMIC_RELAXED);
                seen = m;
                seen_seq = seq;
        }
        pthread_mutex_unlock(&L->lock);
        return NULL;
}

static void *worker(void *arg)
{
        struct loop *L = arg;
        struct fuse_buf buf = { .mem = NULL };
        struct member me = { 0 };

        t_loop = L;
        t_me = &me;
        pthread_mutex_lock(&L->lock);
        for (;;) {
                while (!L->stop && L->led) {
                        L->idle++;
                        pthread_cond_wait(&L->followers, &L->lock);
                        L->idle--;
                }
                if (L->stop)
                        break;
                __atomic_store_n(&L->led, true, __ATOMIC_RELAXED);
                L->cur = &me;
                __atomic_store_n(&me.leader, true, __ATOMIC_RELAXED);
                pthread_mutex_unlock(&L->lock);

                int r;
                do {
                        r = lead(L, &buf);
                        if (r > 0) {
                                __atomic_store_n(&me.seq, me.seq + 1, __ATOMIC_RELAXED);
                                __atomic_store_n(&me.busy, true, __ATOMIC_RELAXED);
                                if (!__atomic_load_n(&L->watching, __ATOMIC_RELAXED))
                                        watch_again(L);
                                fuse_session_process_buf(L->se, &buf);
                                __atomic_store_n(&me.busy, false, __ATOMIC_RELAXED);
                        }
                        /* Still the leader (else another one reads): no lock needed. */
                } while (r > 0 && __atomic_load_n(&me.leader, __ATOMIC_RELAXED));

                pthread_mutex_lock(&L->lock);
                if (me.leader) {
                        __atomic_store_n(&me.leader, false, __ATOMIC_RELAXED);
                        __atomic_store_n(&L->led, false, __ATOMIC_RELAXED);
                        L->cur = NULL;
                }
                if (r <= 0) {
                        if (r < 0 && L->err == 0)
                                L->err = r;
                        set_stop_locked(L);
                        pthread_cond_broadcast(&L->followers);
                        sem_post(&L->finished);
                }
        }
        pthread_mutex_unlock(&L->lock);
        free(buf.mem);
        return NULL;
}

int stampfs_loop(struct fuse_session *se, const struct stampfs_loop_cfg *cfg)
{
        struct loop L = {
                .se = se,
                .fd = fuse_session_fd(se),
                .max_threads = cfg->max_threads,
                .spin_ns = (int64_t)cfg->spin_us * 1000,
                .soon = SOON_ONE,
        };
        pthread_condattr_t monotonic;
        pthread_t watcher;
        bool watched = false;
        sigset_t all, old;
        int flags;

        if (L.max_threads < 1)
                L.max_threads = 1;
        if (L.max_threads > LOOP_THREADS_MAX)
                L.max_threads = LOOP_THREADS_MAX;
        L.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (L.wake_fd < 0)
                return -errno;
        flags = fcntl(L.fd, F_GETFL);
        if (flags < 0 || fcntl(L.fd, F_SETFL, flags | O_NONBLOCK) < 0) {
                int r = -errno;
                close(L.wake_fd);
                return r;
        }
        pthread_mutex_init(&L.lock, NULL);
        pthread_cond_init(&L.followers, NULL);
        pthread_condattr_init(&monotonic);
        (void)pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
        pthread_cond_init(&L.watch, &monotonic);
        pthread_condattr_destroy(&monotonic);
        sem_init(&L.finished, 0, 0);

        /* The threads never take signals: they reach this one. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pthread_mutex_lock(&L.lock);
        if (!spawn_locked(&L)) {
                L.err = -EAGAIN;
                set_stop_locked(&L);
        }
        pthread_mutex_unlock(&L.lock);
        /* With one thread there is no one to hand over to. Without it, no insurance. */
        if (L.max_threads > 1 && !__atomic_load_n(&L.stop, __ATOMIC_RELAXED))
                watched = pthread_create(&watcher, NULL, watchdog, &L) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);

        /*
         * A signal that ends the session interrupts sem_clockwait(); the
         * timeout covers one arriving between the check and the wait.
         */
        while (!__atomic_load_n(&L.stop, __ATOMIC_RELAXED) && !fuse_session_exited(se)) {
                struct timespec ts;

                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += 1;
                (void)sem_clockwait(&L.finished, CLOCK_MONOTONIC, &ts);
        }
        if (!__atomic_load_n(&L.stop, __ATOMIC_RELAXED) && cfg->before_stop)
                cfg->before_stop(cfg->data); /* a signal: the threads still answer */
        pthread_mutex_lock(&L.lock);
        set_stop_locked(&L);
        pthread_cond_broadcast(&L.followers);
        pthread_cond_signal(&L.watch);
        pthread_mutex_unlock(&L.lock);
        (void)eventfd_write(L.wake_fd, 1);

        /* No thread starts once stop is set: n_threads is final. */
        if (watched)
                pthread_join(watcher, NULL);
        for (unsigned i = 0; i < L.n_threads; i++)
                pthread_join(L.threads[i], NULL);
        close(L.wake_fd);
        sem_destroy(&L.finished);
        pthread_cond_destroy(&L.watch);
        pthread_cond_destroy(&L.followers);
        pthread_mutex_destroy(&L.lock);
        (void)fcntl(L.fd, F_SETFL, flags);
        return L.err;
}
