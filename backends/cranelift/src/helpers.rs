//! Helper threads that take work off a compiling thread: a program's
//! functions are independent Cranelift functions, so while the calling
//! thread compiles the largest one, helpers may compile the others.
//!
//! Work is *offered*, never handed over: [`Offer::take`] runs the work on
//! the calling thread itself when no helper has started it yet (all
//! helpers busy with other compiles, or none on a machine with one CPU),
//! so offering never makes a compile wait for a helper that has not begun.
//! A panic in the work reaches the caller of `take`, as it would have
//! without the offer.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;

/// Most helper threads, whatever the machine.
const MAX_HELPERS: usize = 3;

type Work<T> = Box<dyn FnOnce() -> T + Send>;

enum State<T> {
    /// Offered, started by nobody.
    Queued(Work<T>),
    /// Taken by a helper or by the caller.
    Running,
    /// Finished by a helper: its result, or its panic.
    Done(thread::Result<T>),
}

struct Shared<T> {
    state: Mutex<State<T>>,
    done: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic never happens with the lock held (work runs unlocked).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Work that helpers may run (object-safe, for the queue).
trait Job: Send + Sync {
    fn run_if_queued(&self);
}

impl<T: Send> Job for Shared<T> {
    fn run_if_queued(&self) {
        let work = {
            let mut state = lock(&self.state);
            match std::mem::replace(&mut *state, State::Running) {
                State::Queued(w) => w,
                other => {
                    // The caller took it back.
                    *state = other;
                    return;
                }
            }
        };
        let result = catch_unwind(AssertUnwindSafe(work));
        *lock(&self.state) = State::Done(result);
        self.done.notify_all();
    }
}

/// Where work is offered to the helpers.
type Queue = Mutex<Sender<Arc<dyn Job>>>;

/// The queue helpers take work from, with its helpers started; `None`
/// when the machine has one CPU or no helper thread could be started.
fn queue() -> Option<&'static Queue> {
    static QUEUE: OnceLock<Option<Queue>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let cpus = thread::available_parallelism().map_or(1, |n| n.get());
            let helpers = cpus.saturating_sub(1).min(MAX_HELPERS);
            let (tx, rx) = channel::<Arc<dyn Job>>();
            let rx = Arc::new(Mutex::new(rx));
            let mut started = 0;
            for k in 0..helpers {
                let rx = Arc::clone(&rx);
                let spawned = thread::Builder::new()
                    .name(format!("bpfvm-cranelift-{k}"))
                    .spawn(move || helper(&rx));
                if spawned.is_ok() {
                    started += 1;
                }
            }
            (started > 0).then(|| Mutex::new(tx))
        })
        .as_ref()
}

fn helper(rx: &Mutex<Receiver<Arc<dyn Job>>>) {
    loop {
        // One helper waits in `recv` holding the lock, the others on the
        // lock: each job goes to one of them.
        let job = lock(rx).recv();
        match job {
            Ok(job) => job.run_if_queued(),
            Err(_) => return,
        }
    }
}

/// Work offered to the helpers; [`Offer::take`] gives its result.
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
        // never do; the work then stays queued for `take`.
        let _ = lock(q).send(job);
    }
    Offer { shared }
}

impl<T> Offer<T> {
    /// The work's result: computed here if no helper has started it,
    /// else waited for.
    pub(crate) fn take(self) -> T {
        let mut state = lock(&self.shared.state);
        loop {
            match std::mem::replace(&mut *state, State::Running) {
                State::Queued(work) => {
                    drop(state);
                    return work();
                }
                State::Running => {
                    state = self
                        .shared
                        .done
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
                State::Done(Ok(v)) => return v,
                State::Done(Err(panic)) => {
                    drop(state);
                    resume_unwind(panic)
                }
            }
        }
    }
}

impl<T> Drop for Offer<T> {
    /// Work not taken is dropped unstarted (a compile that failed early
    /// no longer needs its other functions).
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        if matches!(*state, State::Queued(_)) {
            *state = State::Running;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order() {
        let offers: Vec<_> = (0..64u64).map(|k| offer(move || k * k)).collect();
        let got: Vec<u64> = offers.into_iter().map(Offer::take).collect();
        assert_eq!(got, (0..64u64).map(|k| k * k).collect::<Vec<_>>());
    }

    #[test]
    fn a_panic_reaches_the_caller() {
        let o = offer(|| -> u32 { panic!("in the work") });
        let r = catch_unwind(AssertUnwindSafe(|| o.take()));
        let msg = r.expect_err("the panic comes back");
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"in the work"));
        // The helpers still work.
        assert_eq!(offer(|| 7).take(), 7);
    }
}
