//! What a diner does with a dish: the tutorial's nap, a command (`--exec`), or a library user's handler.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;

use crate::dish::Dish;
use crate::exec::{Ended, Exec, Job};
use crate::kitchen::chef::random_nap;
use crate::shutdown::Shutdown;

/// What a handler made of a dish: its result (a command's stdout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output(pub Vec<u8>);

/// Why a handler failed a dish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl<T: fmt::Display> From<T> for Failure {
    fn from(e: T) -> Self {
        Failure(e.to_string())
    }
}

/// A library user's work, one per diner thread: `FnMut(&Dish) -> Result<Output, Failure>`.
pub trait Handler: Send {
    /// Eats `dish`: `Ok` with its result, or `Err` with why it failed.
    fn handle(&mut self, dish: &Dish) -> Result<Output, Failure>;
}

impl<F: FnMut(&Dish) -> Result<Output, Failure> + Send> Handler for F {
    fn handle(&mut self, dish: &Dish) -> Result<Output, Failure> {
        self(dish)
    }
}

type MakeHandler = dyn Fn() -> Box<dyn Handler> + Send + Sync;

/// What every diner of a run does with a dish.
#[derive(Clone, Default)]
pub enum Work {
    /// The tutorial's simulation: a nap below `--max-sleep-ms`.
    #[default]
    Nap,
    /// `sh -c CMD` per dish, the payload on stdin (`--exec`).
    Exec(Exec),
    /// A handler; each diner thread gets its own copy.
    Handler(Arc<MakeHandler>),
}

impl Work {
    /// Work done by `handler`, cloned once per diner thread (so it may keep
    /// state of its own, as an `FnMut`).
    ///
    /// ```
    /// use kitchen::kitchen::work::{Output, Work};
    /// let work = Work::handler(|dish: &kitchen::dish::Dish| {
    ///     let words = String::from_utf8_lossy(&dish.payload.bytes()).split_whitespace().count();
    ///     Ok(Output(words.to_string().into_bytes()))
    /// });
    /// # let _ = work;
    /// ```
    pub fn handler<H: Handler + Clone + 'static>(handler: H) -> Work {
        let proto = Mutex::new(handler);
        Work::Handler(Arc::new(move || Box::new(proto.lock().clone())))
    }

    /// The work one diner thread does.
    pub(crate) fn for_diner(&self) -> Meal {
        match self {
            Work::Nap => Meal::Nap,
            Work::Exec(e) => Meal::Exec(e.clone()),
            Work::Handler(make) => Meal::Handler(make()),
        }
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Work::Nap => f.write_str("Nap"),
            Work::Exec(e) => f.debug_tuple("Exec").field(e).finish(),
            Work::Handler(_) => f.write_str("Handler(..)"),
        }
    }
}

impl PartialEq for Work {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Work::Nap, Work::Nap) => true,
            (Work::Exec(a), Work::Exec(b)) => a == b,
            (Work::Handler(a), Work::Handler(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One diner's work.
pub(crate) enum Meal {
    Nap,
    Exec(Exec),
    Handler(Box<dyn Handler>),
}

impl fmt::Debug for Meal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Meal::Nap => f.write_str("Nap"),
            Meal::Exec(e) => f.debug_tuple("Exec").field(e).finish(),
            Meal::Handler(_) => f.write_str("Handler(..)"),
        }
    }
}

/// How eating one dish ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Course {
    /// Eaten, with the result (a command's stdout), if any.
    Ate(Option<Vec<u8>>),
    /// Failed, for this reason.
    Failed(String),
    /// Ended unfinished by the shutdown deadline: the dish goes back.
    Abandoned,
}

/// What a dish's work needs to know besides the dish.
#[derive(Debug)]
pub(crate) struct Table<'a> {
    pub attempt: u32,
    pub queue: &'a str,
    pub max_sleep: Duration,
    /// Stopped when the shutdown deadline has passed.
    pub abandon: &'a Shutdown,
}

impl Meal {
    #[inline(always)]
    pub(crate) fn eat(&mut self, dish: &Dish, table: &Table<'_>, rng: &mut StdRng) -> Course {
        match self {
            Meal::Nap => {
                if !table.max_sleep.is_zero()
                    && table.abandon.sleep(random_nap(rng, table.max_sleep))
                {
                    return Course::Abandoned;
                }
                Course::Ate(None)
            }
            Meal::Exec(exec) => {
                let id = dish.id.to_string();
                let payload = dish.payload.bytes();
                let job = Job {
                    payload: &payload,
                    dish_id: &id,
                    attempt: table.attempt,
                    queue: table.queue,
                };
                match exec.run(&job, table.abandon) {
                    Ended::Ate { output } => Course::Ate(Some(output)),
                    Ended::Failed { reason } => Course::Failed(reason),
                    Ended::Abandoned => Course::Abandoned,
                }
            }
            // A handler runs to its end: there is no safe way to stop a
            // thread from outside. It can watch for the deadline itself.
            Meal::Handler(h) => match h.handle(dish) {
                Ok(Output(out)) => Course::Ate(Some(out)),
                Err(Failure(reason)) => Course::Failed(reason),
            },
        }
    }
}
