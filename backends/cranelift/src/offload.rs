//! Helper threads that take work off a compiling thread: a program's
//! functions are independent Cranelift functions, so while the calling
//! thread compiles the largest one, helpers may compile the others.
//!
//! Work is *offered*, never handed over: [`Offer::run_here_if_queued`]
//! runs the work on the calling thread itself when no helper has started
//! it yet (all helpers busy with other compiles, or none on a machine with
//! one CPU), so offering never makes a compile wait for a helper that has
//! not begun. Panics in the work are caught and handed to the caller with
//! its result ([`Offer::wait`]).
//!
//! The helpers are process-wide: up to [`MAX_HELPERS`], one fewer than the
//! CPUs the first compiling thread may run on, started by the first offer
//! and never stopped; [`set_helper_threads`] lowers the number (0: none).
//! In a child made by `fork` the helpers do not exist: offered work then
//! runs on the calling thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;

/// Most helper threads, whatever the machine.
pub const MAX_HELPERS: usize = 3;

/// `usize::MAX` until [`set_helper_threads`] is called: then its number.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sets how many helper threads tier 0 may use, process-wide, from 0
/// (every function compiled on the thread that compiles its program) to
/// [`MAX_HELPERS`]. Before the first compile that offers work, it sets how
/// many are started; afterwards it can only lower how many are used: 0
/// stops offering work, any other number leaves those already started.
pub fn set_helper_threads(n: usize) {
    LIMIT.store(n.min(MAX_HELPERS), Relaxed);
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

/// Work that helpers may run (object-safe, for the queue).
trait Job: Send + Sync {
    fn run(&self);
}

impl<T: Send> Job for Shared<T> {
    fn run(&self) {
        self.run_if_queued();
    }
}

type Queue = Sender<Arc<dyn Job>>;

/// The queue helpers take work from, with its helpers started; `None`
/// when there is no helper (one CPU, a limit of 0, or no thread could be
/// started).
fn queue() -> Option<&'static Queue> {
    static QUEUE: OnceLock<Option<Queue>> = OnceLock::new();
    if LIMIT.load(Relaxed) == 0 {
        return None;
    }
    QUEUE
        .get_or_init(|| {
            let cpus = thread::available_parallelism().map_or(1, |n| n.get());
            let helpers = cpus
                .saturating_sub(1)
                .min(MAX_HELPERS)
                .min(LIMIT.load(Relaxed));
            let (tx, rx) = channel::<Arc<dyn Job>>();
            let rx = Arc::new(Mutex::new(rx));
            let mut started = 0;
            for k in 0..helpers {
                let rx = Arc::clone(&rx);
                // At most 15 bytes: Linux cuts longer thread names.
                let spawned = thread::Builder::new()
                    .name(format!("bpfvm-jit-{k}"))
                    .spawn(move || helper(&rx));
                if spawned.is_ok() {
                    started += 1;
                }
            }
            (started > 0).then_some(tx)
        })
        .as_ref()
}

fn helper(rx: &Mutex<Receiver<Arc<dyn Job>>>) {
    loop {
        // One helper waits in `recv` holding the lock, the others on the
        // lock: each job goes to one of them.
        let job = lock(rx).recv();
        match job {
            Ok(job) => {
                job.run();
                #[cfg(test)]
                tests::RUN_BY_HELPERS.fetch_add(1, Relaxed);
            }
            Err(_) => return,
        }
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
    if let Some(q) = queue() {
        let job: Arc<dyn Job> = shared.clone();
        // A send fails only once every helper has exited, which they
        // never do; the work then stays queued for this thread.
        let _ = q.send(job);
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
pub(crate) mod tests {
    use super::*;

    /// Jobs helpers have run, in this test process.
    pub(crate) static RUN_BY_HELPERS: AtomicUsize = AtomicUsize::new(0);

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
