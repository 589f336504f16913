/*
 * The shm lock's protocol (src/store/shm/lock.rs) and the single-use claim of an entry
 * (src/store/shm/shard.rs), as a Promela model that spin checks exhaustively. Run by
 * `make model` (scripts/model_check.sh), which `make check` runs: two configurations, and
 * four mutants of the protocol that each must fail (so the properties can fail).
 *
 * Threads 1 and 2 belong to process 0, 3 and 4 to process 1, 5 to process 2 (THREADS of
 * them run). Each runs ITER operations: acquire the lock (fast path, WAITERS and sleep,
 * take-over of a dead or garbage owner, take-over of a live owner as if it had been stuck
 * for steal_after, or giving up), a critical section (a take of the single-use entry or a
 * move of it as a second chance does, when CLAIMS, then a plain fenced write), and release
 * with a wake-up. spin explores every interleaving, so a thread may stall at any step for
 * any number of other threads' steps; the Reaper kills any one process at any step; the
 * word may start free or held by a thread of a process already dead (a garbage word is
 * handled the same way).
 *
 * Checked (assertions, and spin's invalid end states):
 *  1. Mutual exclusion among holders that still write: a write by a thread whose
 *     acquisition is no longer the current one (a ghost variable tracks the truth) is a
 *     stale write, and there is at most one per acquisition (the store it had checked its
 *     fence for when it stalled); and a release never ends another acquisition.
 *  2. No lost wake-up: a sleep ends by a release's wake-up, or by the nap's timeout only
 *     where the code relies on it (a process died: an owner, or a woken waiter or a
 *     releaser that died before passing the wake-up on). Otherwise a thread left asleep
 *     while the others end is an invalid end state.
 *  3. The single-use entry is delivered at most once, whatever stalls and take-overs
 *     happen.
 *  4. A dead owner never keeps a waiter from the lock: a waiter gives up (Busy, the
 *     budget) only while the owner is alive, and every thread ends.
 *
 * Abstracted away: time (the budget and steal_after become "may give up" and "may take
 * over a live owner" at any moment, which is harsher than the code), memory ordering
 * (sequentially consistent steps), the ring and the index (two entry slots holding the
 * entry's checksum or CLAIMED), the reuse of thread IDs, and generations wrapping (2^32
 * acquisitions while one holder is stalled). A compare-and-swap is one atomic step guarded
 * by its comparison; a failed one is the loop going round again.
 */

#ifndef THREADS
#define THREADS 3
#endif
#ifndef ITER
#define ITER 1
#endif
/* Sleeps per acquisition before a waiter must decide (keeps the state space finite). */
#ifndef NAPS
#define NAPS 2
#endif
#ifndef CLAIMS
#define CLAIMS 1
#endif

#define GHOST 6 /* a thread of process 3, dead before the run: a dead or garbage owner */
#define SUM 1 /* an entry's checksum */
#define CLAIMED 0
#define PROC(t) ((t) <= 2 -> 0 : ((t) <= 4 -> 1 : ((t) == 5 -> 2 : 3)))

/* Mutant: the owner is the process, as before issue 22 (threads of one process share it). */
#ifdef MUTANT_PROCESS_OWNER
#define ID(t) (PROC(t) + 1)
#define OWNER_PROC(o) ((o) - 1)
#define GHOST_ID 4
#define SELF false /* the old code waited for its own process like for any live owner */
#else
#define ID(t) (t)
#define OWNER_PROC(o) PROC(o)
#define GHOST_ID GHOST
#define SELF (owner == ID(me))
#endif

/* The lock word: owner and WAITERS (the futex half), and the generation. */
byte owner = 0;
bool waiters = false;
byte gen = 0;

bool dead[4];
bool sleeping[6];
byte entry[2];
byte delivered = 0;

/* Ghost state, the truth the assertions compare with: the current acquisition's number
 * (0 when the lock is free) and the last number given. */
byte current = 0;
byte acquisitions = 0;

#define DIED (dead[0] || dead[1] || dead[2])
#define OWNER_DEAD (owner != 0 && dead[OWNER_PROC(owner)])
#define OWNER_LIVE (owner != 0 && !dead[OWNER_PROC(owner)])
#ifdef MUTANT_PROCESS_OWNER
#define HOLDS (owner == ID(me))
#else
#define HOLDS (owner == ID(me) && gen == token)
#endif

/* Takes the word: a new generation, this thread's ID, WAITERS as given. */
#define TAKE(w) gen++; token = gen; owner = ID(me); waiters = (w); have = true; \
    acquisitions++; current = acquisitions; mine = acquisitions

/* The fence check before a write: ok while the word is still this acquisition's; a failed
 * check is final. */
inline check_fence() {
    atomic {
        if
#ifdef MUTANT_NO_FENCE
        :: true -> ok = true
#else
        :: !lost && HOLDS -> ok = true
        :: else -> ok = false; lost = true
#endif
        fi
    }
}

/* One store, after its fence check. */
inline stale_check() {
    if :: current != mine -> stale++ :: else -> skip fi;
    assert(stale <= 1)
}

inline fenced_write() {
    check_fence();
    if
    :: ok -> atomic { stale_check() }
    :: else -> skip
    fi
}

/* The entry in slot s is found (read), then removed by a plain, fenced store. */
inline claim(s) {
    got = (entry[s] == SUM);
    if
    :: got ->
        check_fence();
        if
        :: ok -> atomic { stale_check(); entry[s] = CLAIMED }
        :: else -> got = false
        fi
    :: else -> skip
    fi
}

/* A single-use lookup of the entry in slot s (a TLS 1.3 ticket). */
inline take(s) {
    claim(s);
    claimed = got
}

/* A second chance: the entry in slot s is claimed, then written to the other slot by a
 * plain, fenced store. */
inline move(s) {
    claim(s);
    if
    :: got ->
        check_fence();
        if
        :: ok -> atomic { stale_check(); entry[1 - s] = SUM }
        :: else -> skip
        fi
    :: else -> skip
    fi
}

proctype Thread(byte me) {
    byte iter = 0;
    byte token;
    byte mine;
    byte naps;
    byte seen;
    byte stale;
    bool have;
    bool slept;
    bool lost;
    bool claimed;
    bool had_waiters;
    bool ok;
    bool got;

    {
    do
    :: iter < ITER ->
        /* ---- acquire ---- */
        do
        :: atomic { owner == 0 ->
#ifdef MUTANT_FORGET_WAITERS
               TAKE(false) };
#else
               TAKE(slept) };
#endif
           break
#ifndef MUTANT_NO_TAKEOVER
        :: atomic { OWNER_DEAD || SELF -> TAKE(true) };
           break /* a dead or garbage owner, or a dead thread with this thread's ID */
#endif
        :: atomic { OWNER_LIVE && !SELF -> TAKE(true) };
           break /* held past steal_after: taken over */
        :: atomic { OWNER_LIVE -> skip };
           break /* Busy: the budget ran out while the owner was alive */
        :: atomic { naps < NAPS && OWNER_LIVE -> waiters = true; seen = owner; naps++ };
           /* futex_wait: sleeps only if the word's low half is still what was seen */
           atomic { if :: owner == seen && waiters -> sleeping[me] = true :: else -> skip fi };
           slept = true;
           if
           :: !sleeping[me] -> skip /* woken, or never slept */
           :: atomic { sleeping[me] && (DIED || OWNER_DEAD) -> sleeping[me] = false }
              /* the nap ends: a liveness check is due */
           fi
        od;

        /* ---- the critical section ---- */
        if
        :: have ->
#if CLAIMS
            if
            :: entry[0] == SUM -> take(0)
            :: entry[1] == SUM -> take(1)
            :: entry[0] == SUM -> move(0)
            :: entry[1] == SUM -> move(1)
            :: else -> skip
            fi;
#endif
            /* a plain write (index, header, a wipe), fenced */
            fenced_write();
            /* ---- release: only this acquisition's; the outcome (a taken entry is
             * delivered) is used only if the release succeeds ---- */
            atomic {
                if
                :: HOLDS ->
                    assert(current == mine); /* never ends another acquisition */
                    current = 0; owner = 0; had_waiters = waiters; waiters = false;
                    if :: claimed -> delivered++ :: else -> skip fi
                :: else ->
                    had_waiters = false; /* taken over: the word is left alone */
#ifdef MUTANT_NO_OUTCOME_CHECK
                    if :: claimed -> delivered++ :: else -> skip fi
#endif
                fi;
                assert(delivered <= 1)
            };
            if
            :: had_waiters ->
                /* FUTEX_WAKE: one sleeper of a live process */
                atomic {
                    if
                    :: sleeping[1] && !dead[0] -> sleeping[1] = false
                    :: sleeping[2] && !dead[0] -> sleeping[2] = false
                    :: sleeping[3] && !dead[1] -> sleeping[3] = false
                    :: sleeping[4] && !dead[1] -> sleeping[4] = false
                    :: sleeping[5] && !dead[2] -> sleeping[5] = false
                    :: else -> skip
                    fi
                }
            :: else -> skip
            fi
        :: else -> skip
        fi;
        /* forget this operation's locals (so that spin merges equal states) */
        d_step {
            token = 0; mine = 0; naps = 0; seen = 0; stale = 0; have = false;
            slept = false; lost = false; claimed = false; had_waiters = false; ok = false;
            got = false; iter++
        }
    :: else -> break
    od
    } unless { dead[PROC(me)] }
}

/* Any one process may die at any step. */
active proctype Reaper() {
    if
    :: dead[0] = true
    :: dead[1] = true
    :: dead[2] = true
    :: skip
    fi
}

init {
    dead[3] = true;
    entry[0] = SUM;
    entry[1] = CLAIMED;
    if
    :: owner = 0
    :: owner = GHOST_ID; waiters = false
    :: owner = GHOST_ID; waiters = true
    fi;
    atomic {
        run Thread(1);
        run Thread(2);
        run Thread(3);
#if THREADS >= 4
        run Thread(4);
#endif
#if THREADS >= 5
        run Thread(5)
#endif
    }
}
