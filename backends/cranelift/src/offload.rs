//! Helper threads that take work off a compiling thread: a program's
//! functions (and the pieces of a large one, [`crate::pieces`]) are
//! independent Cranelift functions, so while the calling thread compiles
//! the largest, helpers may compile the others.
//!
//! Work is *offered*, never handed over: [`Offer::run_here_if_queued`]
//! runs the work on the calling thread itself when no helper has started
//! it yet (all helpers busy with other compiles, or none on a machine with
//! one CPU), so offering never makes a compile wait for a helper that has
//! not begun. Panics in the work are caught and handed to the caller with
//! its result ([`Offer::wait`]).
//!
//! The helpers are process-wide: [`helper_threads`] of them, each with its
//! own queue, started when work is first offered to them and never
//! stopped. A child made by `fork` starts its own at its first offer
//! (unless another thread of the parent was offering work at the moment of
//! the fork: like any lock held then, the helpers' lock stays held in the
//! child).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;

/// Most helper threads, whatever the machine.
pub const MAX_HELPERS: usize = 3;

/// `usize::MAX` until [`set_helper_threads`] is called: then its number.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sets how many helper threads tier 0 may use, process-wide: 0 compiles
/// every function on the thread that compiles its program; more than
/// [`MAX_HELPERS`], or than one fewer than the CPUs, counts as that. It
/// applies from the next compile on; helpers started before and no longer
/// used wait, idle.
pub fn set_helper_threads(n: usize) {
    LIMIT.store(n, Relaxed);
}

/// How many helper threads take offered work: [`set_helper_threads`]'s
/// number, by default [`MAX_HELPERS`], and at most one fewer than the
/// CPUs the first compiling thread may run on.
pub(crate) fn helper_threads() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    let cpus = *CPUS.get_or_init(|| thread::available_parallelism().map_or(1, |n| n.get()));
    LIMIT
        .load(Relaxed)
        .min(MAX_HELPERS)
        .min(cpus.saturating_sub(1))
}

type Work<T> = Box<dyn FnOnce() -> T + Send>;

enum State<T> {
    /// Offered, started by nobody.
    Queued(Work<T>),
    /// Taken by a helper or by the caller.
    Running,
    /// Finished: its result, or its panic.
    Done(thread::Result<T>),
    /// Its result handed to the caller.
    Taken,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    done: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Work runs with no lock held: a panic cannot poison one.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Shared<T> {
    /// Runs the work here if nobody has started it; false if somebody had.
    fn run_if_queued(&self) -> bool {
        let work = {
            let mut state = lock(&self.state);
            match std::mem::replace(&mut *state, State::Running) {
                State::Queued(w) => w,
                other => {
                    *state = other;
                    return false;
                }
            }
        };
        let result = catch_unwind(AssertUnwindSafe(work));
        *lock(&self.state) = State::Done(result);
        self.done.notify_all();
        true
    }
}

/// Work that helpers may run (object-safe, for the queues).
trait Job: Send + Sync {
    fn run(&self);
}

impl<T: Send> Job for Shared<T> {
    fn run(&self) {
        self.run_if_queued();
    }
}

/// The helpers started in this process: each one's queue.
struct Helpers {
    queues: Vec<Sender<Arc<dyn Job>>>,
    /// The process they were started in (a child made by `fork` has none
    /// of them).
    pid: u32,
    /// The next one to offer work to.
    next: usize,
}

static HELPERS: Mutex<Helpers> = Mutex::new(Helpers {
    queues: Vec::new(),
    pid: 0,
    next: 0,
});

/// Hands `job` to one of the first `n` helpers, starting them if need be
/// (fewer if no more threads can be started; none: the job stays queued
/// for its offerer).
fn hand_over(job: Arc<dyn Job>, n: usize) {
    let mut h = lock(&HELPERS);
    let pid = std::process::id();
    if h.pid != pid {
        // Not started here: the parent's helpers did not come with `fork`.
        h.queues.clear();
        h.pid = pid;
    }
    while h.queues.len() < n {
        let (tx, rx) = channel::<Arc<dyn Job>>();
        // At most 15 bytes: Linux cuts longer thread names.
        let spawned = thread::Builder::new()
            .name(format!("bpfvm-jit-{}", h.queues.len()))
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job.run();
                }
            });
        if spawned.is_err() {
            break;
        }
        h.queues.push(tx);
    }
    let n = n.min(h.queues.len());
    if n > 0 {
        let k = h.next % n;
        h.next = h.next.wrapping_add(1);
        // A helper never exits: the send does not fail.
        let _ = h.queues[k].send(job);
    }
}

/// Work offered to the helpers.
pub(crate) struct Offer<T> {
    shared: Arc<Shared<T>>,
}

/// Offers `work` to the helper threads.
pub(crate) fn offer<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Offer<T> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::Queued(Box::new(work))),
        done: Condvar::new(),
    });
    let n = helper_threads();
    if n > 0 {
        hand_over(shared.clone(), n);
    }
    Offer { shared }
}

impl<T> Offer<T> {
    /// Runs the work on this thread if no helper has started it.
    pub(crate) fn run_here_if_queued(&self) {
        self.shared.run_if_queued();
    }

    /// The work's result, or its panic: run here if nobody has started
    /// it, else waited for.
    pub(crate) fn wait(self) -> thread::Result<T> {
        self.shared.run_if_queued();
        let mut state = lock(&self.shared.state);
        loop {
            match std::mem::replace(&mut *state, State::Taken) {
                State::Done(result) => return result,
                State::Running => {
                    *state = State::Running;
                    state = self
                        .shared
                        .done
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
                State::Queued(_) | State::Taken => {
                    unreachable!("run above, and taken only here")
                }
            }
        }
    }
}

impl<T> Drop for Offer<T> {
    /// Work not taken is dropped unstarted.
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        if matches!(*state, State::Queued(_)) {
            *state = State::Taken;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order() {
        let offers: Vec<_> = (0..64u64).map(|k| offer(move || k * k)).collect();
        for o in offers.iter().rev().take(10) {
            o.run_here_if_queued();
        }
        let got: Vec<u64> = offers.into_iter().map(|o| o.wait().unwrap()).collect();
        assert_eq!(got, (0..64u64).map(|k| k * k).collect::<Vec<_>>());
    }

    #[test]
    fn a_panic_comes_back_as_a_value() {
        let o = offer(|| -> u32 { panic!("in the work") });
        let msg = o.wait().expect_err("the panic comes back");
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"in the work"));
        // The helpers still work.
        assert_eq!(offer(|| 7).wait().unwrap(), 7);
    }

    #[test]
    fn dropped_work_does_not_run() {
        /// Counts its drops.
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Relaxed);
            }
        }
        let (ran, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, flag) = (Arc::clone(&ran), Flag(Arc::clone(&dropped)));
        // Not sent to the helpers: the drop, not a race, decides.
        let work: Work<()> = Box::new(move || {
            let _flag = flag;
            r.fetch_add(1, Relaxed);
        });
        let o = Offer {
            shared: Arc::new(Shared {
                state: Mutex::new(State::Queued(work)),
                done: Condvar::new(),
            }),
        };
        let shared = Arc::clone(&o.shared);
        drop(o);
        assert_eq!(dropped.load(Relaxed), 1, "the work is gone");
        assert!(!shared.run_if_queued(), "a helper finds nothing to run");
        assert_eq!(ran.load(Relaxed), 0);
    }

    #[test]
    fn taken_back_work_runs_once() {
        let ran = Arc::new(AtomicUsize::new(0));
        let offers: Vec<_> = (0..200)
            .map(|_| {
                let r = Arc::clone(&ran);
                offer(move || r.fetch_add(1, Relaxed))
            })
            .collect();
        for o in offers.iter().rev() {
            o.run_here_if_queued();
        }
        let mut seen: Vec<usize> = offers.into_iter().map(|o| o.wait().unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>(), "each ran exactly once");
        assert_eq!(ran.load(Relaxed), 200);
    }
}
