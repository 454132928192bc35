//! Errors of workpool: [`TaskError`] for what happened to one task, [`BuildError`] for what kept
//! a pool from starting.

use std::fmt;
use std::time::Duration;

/// Why a pool or executor could not be built or started.
///
/// ```no_run
/// fn main() {
///     workpool::init();
///     let executor = match workpool::Executor::builder().workers(2).build() {
///         Ok(executor) => executor,
///         Err(e) => {
///             // Says what happened and what to do, e.g. that `init()` was never called.
///             eprintln!("could not start the worker pool: {e}");
///             std::process::exit(1);
///         }
///     };
///     assert_eq!(executor.num_workers(), 2);
/// }
/// ```
#[derive(Debug)]
pub struct BuildError {
    message: String,
    source: Option<std::io::Error>,
}

impl BuildError {
    pub(crate) fn io(what: &str, e: std::io::Error) -> Self {
        BuildError { message: format!("{what}: {e}"), source: Some(e) }
    }

    pub(crate) fn msg(message: impl Into<String>) -> Self {
        BuildError { message: message.into(), source: None }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// What went wrong with one task. Match on it with the `is_*` predicates or [`TaskError::kind`].
///
/// Every variant says what happened and, where it helps, what to do; the worker pool itself is
/// never left broken by any of them.
///
/// ```
/// use workpool::{Backend, Parallel};
///
/// #[workpool::task]
/// fn divide(a: u64, b: u64) -> u64 {
///     a / b // panics when b is 0
/// }
///
/// fn main() {
///     let err = Parallel::new()
///         .backend(Backend::Threads)
///         .run([Divide { a: 6, b: 3 }, Divide { a: 1, b: 0 }])
///         .unwrap_err();
///     assert!(err.is_panic());
///     assert!(err.task_type().ends_with("Divide"));
///     assert!(err.panic_message().unwrap().contains("divide by zero"));
///     println!("{err}"); // task …::Divide panicked at src/…: attempt to divide by zero
/// }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TaskError {
    kind: ErrorKind,
    task: &'static str,
    /// The worker that ended under the task (death, timeout, kill): its pid and raw wait
    /// status (`None` when unknown).
    worker_end: Option<(u32, Option<i32>)>,
    /// A `Cancelled` that came from `TaskHandle::kill` (which may have stopped it running).
    killed: bool,
}

/// The kinds of [`TaskError`].
///
/// ```
/// use workpool::{ErrorKind, TaskError};
///
/// /// What to tell the user about a failed task.
/// fn advice(e: &TaskError) -> String {
///     match e.kind() {
///         ErrorKind::Panic { message, .. } => format!("a bug in the task: {message}"),
///         ErrorKind::WorkerDeath { cause, .. } => format!("its process died ({cause}); retrying may help"),
///         ErrorKind::Timeout { limit } => format!("it ran past {limit:?}"),
///         ErrorKind::Cancelled | ErrorKind::Interrupted => "it was stopped on request".to_string(),
///         _ => e.to_string(),
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The task panicked; the worker lived on.
    Panic {
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The worker process died while running the task.
    WorkerDeath {
        /// The signal (`SIGSEGV`, `SIGKILL`, …) or exit code, in words.
        cause: String,
        /// The worker's process id.
        pid: u32,
    },
    /// The task ran past the executor's `task_timeout`; its worker was killed and replaced.
    Timeout {
        /// The limit it ran past.
        limit: Duration,
    },
    /// The task was cancelled before it started ([`TaskHandle::cancel`](crate::TaskHandle::cancel),
    /// a dropped `map` iterator, an early error in `Parallel`, or `shutdown`), or stopped by
    /// [`TaskHandle::kill`](crate::TaskHandle::kill) wherever it was.
    Cancelled,
    /// The task was stopped or never started because of Ctrl-C ([`crate::handle_ctrl_c`]).
    Interrupted,
    /// The task's argument or result could not be encoded or decoded.
    Codec {
        /// Where: "encoding the argument", "decoding the argument in the worker", …
        stage: &'static str,
        /// The codec's message.
        message: String,
    },
    /// The task type was never passed to [`register!`](crate::register).
    NotRegistered,
    /// The executor was shut down before the task was submitted.
    ShutDown,
    /// No worker process could be started.
    Spawn {
        /// Why, and what to do about it.
        message: String,
    },
}

impl TaskError {
    pub(crate) fn new(kind: ErrorKind, task: &'static str) -> Self {
        TaskError { kind, task, worker_end: None, killed: false }
    }

    /// The error of a task stopped by `TaskHandle::kill`.
    pub(crate) fn killed(task: &'static str) -> Self {
        TaskError { killed: true, ..TaskError::new(ErrorKind::Cancelled, task) }
    }

    /// Records how the task's worker process ended under it (pid, raw wait status).
    pub(crate) fn with_worker_end(mut self, pid: u32, status: Option<i32>) -> Self {
        self.worker_end = Some((pid, status));
        self
    }

    /// The signal that killed the worker process under this task (`libc::SIGSEGV`, 9 for
    /// SIGKILL, …), when it died of one: a worker death, a timeout (the executor killed it), a
    /// killed task. `None` for every other error, and when the worker exited normally.
    ///
    /// ```no_run
    /// # fn check(err: workpool::TaskError) {
    /// if let Some(signal) = err.signal() {
    ///     eprintln!("worker killed by signal {signal}");
    /// }
    /// # }
    /// ```
    pub fn signal(&self) -> Option<i32> {
        let status = self.worker_end?.1?;
        libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
    }

    /// The exit code of a worker process that exited while running this task (a task that
    /// called `std::process::exit(3)` gives `Some(3)`); `None` for every other error.
    ///
    /// ```no_run
    /// # fn check(err: workpool::TaskError) {
    /// if err.exit_code() == Some(3) {
    ///     eprintln!("the worker exited with code 3");
    /// }
    /// # }
    /// ```
    pub fn exit_code(&self) -> Option<i32> {
        let status = self.worker_end?.1?;
        libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
    }

    /// The process id of the worker that ended under this task (death, timeout, kill);
    /// `None` for every other error.
    ///
    /// ```no_run
    /// # fn check(err: workpool::TaskError) {
    /// if let Some(pid) = err.pid() {
    ///     eprintln!("worker {pid} died");
    /// }
    /// # }
    /// ```
    pub fn pid(&self) -> Option<u32> {
        match self.kind {
            ErrorKind::WorkerDeath { pid, .. } => Some(pid),
            _ => self.worker_end.map(|(pid, _)| pid),
        }
    }

    /// The kind of failure, with its details.
    ///
    /// ```
    /// # fn report(e: &workpool::TaskError) {
    /// if let workpool::ErrorKind::Timeout { limit } = e.kind() {
    ///     eprintln!("{} gave up after {limit:?}", e.task_type());
    /// }
    /// # }
    /// ```
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The type name of the task that failed.
    ///
    /// ```
    /// # fn report(e: &workpool::TaskError) {
    /// eprintln!("a task of type {} failed: {e}", e.task_type());
    /// # }
    /// ```
    pub fn task_type(&self) -> &'static str {
        self.task
    }

    /// The task panicked (see [`ErrorKind::Panic`]).
    ///
    /// ```
    /// # fn report(e: &workpool::TaskError) {
    /// if e.is_panic() {
    ///     eprintln!("bug: {}", e.panic_message().unwrap_or("(no message)"));
    /// }
    /// # }
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, ErrorKind::Panic { .. })
    }

    /// The worker process died under the task (see [`ErrorKind::WorkerDeath`]).
    ///
    /// ```
    /// use workpool::{Executor, Task, TaskError};
    ///
    /// /// Runs a task, and once more if its worker process crashed under it.
    /// fn run_with_one_retry<T: Task + Clone>(ex: &Executor, task: T) -> Result<T::Output, TaskError> {
    ///     match ex.submit(task.clone()).join() {
    ///         Err(e) if e.is_worker_death() => ex.submit(task).join(),
    ///         other => other,
    ///     }
    /// }
    /// ```
    pub fn is_worker_death(&self) -> bool {
        matches!(self.kind, ErrorKind::WorkerDeath { .. })
    }

    /// The task ran past its time limit.
    ///
    /// ```
    /// # fn report(e: &workpool::TaskError) {
    /// if e.is_timeout() {
    ///     eprintln!("skipped a slow input: {e}"); // its worker was killed and replaced
    /// }
    /// # }
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout { .. })
    }

    /// The task was cancelled before it started, or killed through its handle.
    ///
    /// ```
    /// # fn report(e: &workpool::TaskError) {
    /// if e.is_cancelled() {
    ///     return; // we asked for it: `cancel()`, `kill()`, a dropped `map`, or `shutdown(Shutdown::CancelQueued)`
    /// }
    /// # }
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, ErrorKind::Cancelled)
    }

    /// The task was interrupted by Ctrl-C.
    ///
    /// ```
    /// # fn report(results: impl Iterator<Item = Result<u64, workpool::TaskError>>) {
    /// for result in results {
    ///     match result {
    ///         Err(e) if e.is_interrupted() => break, // Ctrl-C: back to the prompt
    ///         Err(e) => eprintln!("{e}"),
    ///         Ok(n) => println!("{n}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn is_interrupted(&self) -> bool {
        matches!(self.kind, ErrorKind::Interrupted)
    }

    /// The argument or result could not be serialized or deserialized.
    ///
    /// ```
    /// # fn report(e: &workpool::TaskError) {
    /// if e.is_codec() {
    ///     // The message names the type and the construct the process codec cannot carry.
    ///     eprintln!("change the task's types: {e}");
    /// }
    /// # }
    /// ```
    pub fn is_codec(&self) -> bool {
        matches!(self.kind, ErrorKind::Codec { .. })
    }

    /// The task type was never registered.
    ///
    /// ```
    /// # fn report(e: &workpool::TaskError) {
    /// if e.is_not_registered() {
    ///     eprintln!("{e}"); // says to use `#[workpool::task]` or `workpool::register!`
    /// }
    /// # }
    /// ```
    pub fn is_not_registered(&self) -> bool {
        matches!(self.kind, ErrorKind::NotRegistered)
    }

    /// No worker process could be started.
    ///
    /// ```
    /// # fn report(e: &workpool::TaskError) {
    /// if e.is_spawn() {
    ///     eprintln!("no worker could start: {e}"); // the next task tries again
    /// }
    /// # }
    /// ```
    pub fn is_spawn(&self) -> bool {
        matches!(self.kind, ErrorKind::Spawn { .. })
    }

    /// The panic message, for a panic.
    ///
    /// ```
    /// # fn report(e: &workpool::TaskError) {
    /// match e.panic_message() {
    ///     Some(message) => eprintln!("panicked: {message}"),
    ///     None => eprintln!("failed: {e}"),
    /// }
    /// # }
    /// ```
    pub fn panic_message(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Panic { message, .. } => Some(message),
            _ => None,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let task = self.task;
        match &self.kind {
            ErrorKind::Panic { message, location: Some(at) } => write!(f, "task {task} panicked at {at}: {message}"),
            ErrorKind::Panic { message, location: None } => write!(f, "task {task} panicked: {message}"),
            ErrorKind::WorkerDeath { cause, pid } => write!(
                f,
                "the worker process (pid {pid}) running task {task} died: {cause}; the task's result is lost, \
                 the executor has replaced the worker"
            ),
            ErrorKind::Timeout { limit } => write!(
                f,
                "task {task} ran longer than the task timeout ({limit:?}); its worker was killed and replaced"
            ),
            ErrorKind::Cancelled if self.killed => {
                write!(f, "task {task} was killed through its handle (TaskHandle::kill) before it finished")
            }
            ErrorKind::Cancelled => write!(f, "task {task} was cancelled before it started"),
            ErrorKind::Interrupted => write!(f, "task {task} was interrupted by Ctrl-C"),
            ErrorKind::Codec { stage, message } => write!(f, "task {task}: {stage} failed: {message}"),
            ErrorKind::NotRegistered => write!(
                f,
                "task type {task} is not registered: add `workpool::register!({short});` at item level in your crate",
                short = task.rsplit("::").next().unwrap_or(task)
            ),
            ErrorKind::ShutDown => write!(f, "task {task} was submitted to an executor that was shut down"),
            ErrorKind::Spawn { message } => write!(f, "no worker could be started for task {task}: {message}"),
        }
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError").field("task", &self.task).field("kind", &self.kind).finish()
    }
}

impl std::error::Error for TaskError {}
