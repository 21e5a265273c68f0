//! A persistent team of threads for the many short parallel loops of a
//! decode step. A token of SmolLM2 at batch 1 runs about 120 matrix
//! products of a few hundred microseconds each; on a general pool every one
//! of them wakes the other threads through the kernel (a profile put some
//! 13% of the decode time in wake-ups and yields). The team's workers spin
//! for a short while after each job, so the next job of the same step finds
//! them awake, and sleep on a condition variable only after that.
//!
//! One job runs at a time. A caller that finds the team busy (another
//! thread's job) runs its own job inline: correct, only not parallel.
//!
//! ```text
//!  run(n, f):  job = {f, n, next}  ─► generation += 1 ─► workers wake (or were spinning)
//!              caller and workers take task indices from `next` until n
//!              caller waits until every worker reported done ─► returns
//! ```

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Spin iterations a worker waits for the next job before it sleeps:
/// about 50 µs, longer than the gaps between the products of one step.
const SPIN: u32 = 20_000;

/// One job: `f(i)` for every `i < n`, each index taken once.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    n: usize,
    next: AtomicUsize,
    panicked: AtomicBool,
}

impl Job<'_> {
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.f)(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
        }
    }
}

struct Shared {
    /// Bumped once per job; workers wait for it to change.
    generation: AtomicU64,
    /// The current job (a `Job` on the caller's stack, alive until every
    /// worker reported done).
    job: AtomicPtr<()>,
    /// Workers done with the current job.
    done: AtomicUsize,
    /// Workers asleep on `wake`, and the lock they sleep under.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

/// The team; [`team`] gives the process-wide one.
pub struct Team {
    shared: Arc<Shared>,
    workers: usize,
    /// Held while a job runs.
    busy: Mutex<()>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team").field("workers", &self.workers).finish()
    }
}

impl Team {
    /// A team of `workers` threads besides the caller.
    pub fn new(workers: usize) -> Self {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut started = 0;
        for i in 0..workers {
            let s = Arc::clone(&shared);
            let spawned =
                std::thread::Builder::new().name(format!("gonka-team-{i}")).spawn(move || worker(&s));
            if spawned.is_ok() {
                started += 1;
            }
        }
        Self { shared, workers: started, busy: Mutex::new(()) }
    }

    /// Threads that work beside the caller.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Calls `f(i)` for every `i < n`, on the caller and the team; returns
    /// when all are done. A panic in `f` is raised again here.
    pub fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        let guard = match self.busy.try_lock() {
            Ok(g) if n > 1 && self.workers > 0 => g,
            // One task, no workers, or the team is busy with another thread's job.
            _ => return (0..n).for_each(f),
        };
        let job = Job { f, n, next: AtomicUsize::new(0), panicked: AtomicBool::new(false) };
        let s = &*self.shared;
        s.done.store(0, Ordering::SeqCst);
        s.job.store(&job as *const Job<'_> as *mut (), Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        job.work();
        // The job lives on this stack: wait until no worker can touch it.
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < self.workers {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        s.job.store(std::ptr::null_mut(), Ordering::SeqCst);
        drop(guard);
        if job.panicked.load(Ordering::Relaxed) {
            panic!("a task of a team job panicked");
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
    }
}

fn worker(s: &Shared) {
    // Not the generation now: a job may have started before this thread did.
    let mut seen = 0;
    loop {
        let mut spins = 0u32;
        loop {
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
            let g = s.generation.load(Ordering::SeqCst);
            if g != seen {
                seen = g;
                break;
            }
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let mut l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.generation.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                l = s.wake.wait(l).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(l);
            spins = 0;
        }
        let ptr = s.job.load(Ordering::SeqCst) as *const Job<'_>;
        // SAFETY: the caller set `job` before bumping the generation this
        // worker just saw, and keeps the job alive (and `job` set) until
        // every worker, this one included, has incremented `done` below.
        if let Some(job) = unsafe { ptr.as_ref() } {
            job.work();
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

/// The process-wide team: as many threads in all as rayon's global pool
/// (`RAYON_NUM_THREADS` sets both), the caller being one of them.
pub fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| Team::new(rayon::current_num_threads().saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_runs_once_across_many_jobs() {
        let t = Team::new(3);
        for n in [0usize, 1, 2, 7, 100, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..50 {
                t.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 50), "n = {n}");
        }
    }

    #[test]
    fn jobs_after_the_workers_slept_still_run_and_callers_may_race() {
        let t = Arc::new(Team::new(2));
        let sum = AtomicUsize::new(0);
        t.run(10, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        t.run(10, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 90);
        // Four threads at once: one uses the team, the others run inline.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    let total = AtomicUsize::new(0);
                    for _ in 0..200 {
                        t.run(64, &|i| {
                            total.fetch_add(i, Ordering::Relaxed);
                        });
                    }
                    total.load(Ordering::Relaxed)
                })
            })
            .collect();
        for h in threads {
            assert_eq!(h.join().expect("no panic"), 200 * (63 * 64 / 2));
        }
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_team_goes_on() {
        let t = Team::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.run(16, &|i| assert!(i != 5, "task 5"));
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        t.run(16, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 16);
    }
}
