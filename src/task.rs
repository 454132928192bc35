//! Typed tasks and the registry that lets a worker process find their code by name.
//!
//! `register!(A, B)` submits one [`Registration`] per type to a link-time collection
//! (`inventory`). Both the parent and its workers are the same binary, so both see the same
//! collection. On the wire a task is named by a 64-bit hash of its type name: a corrupt frame
//! can at worst name a task that does not exist, never jump to an arbitrary address.

use crate::codec;
use crate::unwind;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;

/// A unit of work that can run in a worker process (or on a thread).
///
/// Tasks must be `Send` (the thread backend moves them between threads):
///
/// ```compile_fail
/// use std::rc::Rc;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct NotSend(#[serde(skip)] Rc<u8>);
/// impl workpool::Task for NotSend { // error: `Rc<u8>` cannot be sent between threads
///     type Output = ();
///     fn run(self) {}
/// }
/// ```
///
/// The task value is the argument: it is serialized, sent to a worker, deserialized, and
/// `run`; the output travels back the same way. Make the type runnable in workers with
/// [`register!`](crate::register), or let [`#[workpool::task]`](macro@crate::task) write the
/// type, the impl and the registration from a function.
///
/// # What crosses the process boundary
///
/// Between processes, tasks and results travel in a compact format that is **not
/// self-describing**: values are written one after another, with no field names, type tags or
/// lengths of structs, and read back guided by the type alone. Most serde types work as they
/// are. These do not, although the same task works on [`Backend::Threads`](crate::Backend),
/// which moves values without encoding them:
///
/// | construct | what happens | write instead |
/// |---|---|---|
/// | `#[serde(untagged)]` enums | decoding fails: they ask the data which variant it holds (`deserialize_any`) | an externally tagged enum, serde's default |
/// | internally tagged enums, `#[serde(tag = "kind")]` | decoding fails, likewise | an externally tagged enum |
/// | adjacently tagged enums, `#[serde(tag = "t", content = "c")]` | decoding fails: they read variant names | an externally tagged enum |
/// | `#[serde(flatten)]` | encoding fails: a map of unknown length | the flattened fields spelt out in the struct |
/// | `serde_json::Value` (and other "any value" types) | decoding fails, as for untagged enums | the JSON as a `String`, parsed in the task |
/// | `#[serde(skip_serializing_if = "..")]`, `#[serde(skip_serializing)]` | the skipped field is not written but is read: decoding fails, or reads the next field's bytes | write every field every time (an `Option` as `None`); skip both ways with `#[serde(skip)]` |
/// | `#[serde(skip_deserializing)]` alone | the field is written but not read: bytes are left over | `#[serde(skip)]` |
/// | hand-written `Serialize` that uses `collect_seq`/`collect_map` over an iterator of unknown length | encoding fails | collect into a `Vec` first |
///
/// The error ([`TaskError::is_codec`](crate::TaskError::is_codec)) names the type, where in it
/// the failure came up, the construct likely responsible and what to write instead.
///
/// # Large data
///
/// A plain `Vec<u8>` (or `Vec<f32>`, ...) field is encoded element by element and copied
/// through the socket, and a frame holds at most 1 GiB: fine for kilobytes, slow for images and
/// arrays. Put large buffers in [`Bytes`](crate::Bytes) fields instead: from 256 KiB on they
/// travel in shared memory beside the frame, are mapped by the worker without a copy, and may
/// be larger than a frame. Results too.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Square(u64);
///
/// impl workpool::Task for Square {
///     type Output = u64;
///     fn run(self) -> u64 {
///         self.0 * self.0
///     }
/// }
///
/// workpool::register!(Square);
/// ```
pub trait Task: Serialize + DeserializeOwned + Send + 'static {
    /// What the task returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Does the work. A panic here becomes a [`TaskError`](crate::TaskError) for this task only.
    fn run(self) -> Self::Output;
}

/// Makes task types runnable in worker processes. Use it once per type, at item level, in the
/// crate that defines the types (or in the binary):
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Resize(u32);
/// # impl workpool::Task for Resize { type Output = u32; fn run(self) -> u32 { self.0 / 2 } }
/// # #[derive(Serialize, Deserialize)] struct Blur(u32);
/// # impl workpool::Task for Blur { type Output = u32; fn run(self) -> u32 { self.0 } }
/// workpool::register!(Resize, Blur);
/// ```
///
/// Submitting a type that was never registered fails at once with
/// [`TaskError::is_not_registered`](crate::TaskError::is_not_registered).
#[macro_export]
macro_rules! register {
    ($($task:ty),+ $(,)?) => {
        $(
            $crate::__private::inventory::submit! {
                $crate::__private::Registration::of::<$task>()
            }
        )+
    };
}

/// Turns a free function into a task: the function stays as it is, and a task type named after
/// it in UpperCamelCase holds its parameters as fields, in order.
///
/// ```
/// use workpool::{Backend, Parallel, Task};
///
/// /// Adds two numbers (this line documents `Add` too).
/// #[workpool::task]
/// fn add(a: u64, b: u64) -> u64 {
///     a + b
/// }
///
/// # fn main() {
/// assert_eq!(add(1, 2), 3); // still an ordinary function
/// assert_eq!(Add { a: 1, b: 2 }.run(), 3); // the task type `Add`; `run` calls `add`
///
/// // Anywhere a task goes: `Executor::submit`, `Executor::map`, `Parallel`, on both backends.
/// let sums = Parallel::new().backend(Backend::Threads).run((0..10).map(|a| Add { a, b: a })).unwrap();
/// assert_eq!(sums[3], 6);
/// # }
/// ```
///
/// For `fn add(a: u64, b: u64) -> u64` the attribute writes what one would write by hand:
///
/// ```
/// # fn add(a: u64, b: u64) -> u64 { a + b }
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Add {
///     a: u64,
///     b: u64,
/// }
///
/// impl workpool::Task for Add {
///     type Output = u64;
///     fn run(self) -> u64 {
///         add(self.a, self.b)
///     }
/// }
///
/// workpool::register!(Add);
/// ```
///
/// The details:
///
/// * **Names**: `resize_image` gives `ResizeImage`, `fib` gives `Fib`;
///   `#[workpool::task(name = "Resize")]` chooses another. A function without parameters gives a
///   unit struct (`fn tick()` gives `Tick`, submitted as `ex.submit(Tick)`).
/// * **Visibility**: the type and its fields have the function's visibility, so a `pub fn` gives
///   a `pub` type with `pub` fields, and the fields can be set wherever the type can be named.
///   The function's doc comments document the type too.
/// * **Derives**: `Serialize` and `Deserialize` only, through workpool's own serde (the crate
///   need not depend on serde itself); add others with `#[workpool::task(derive(Debug, Clone))]`.
///   `#[serde(..)]` attributes on a parameter move to its field
///   (`#[serde(with = "serde_bytes")] data: Vec<u8>`).
/// * **Output**: the return type, `()` when there is none. Like the parameters, it must be
///   `Serialize + Deserialize + Send + 'static`; a type that is not is reported at that type with
///   what to do. Constructs that cannot cross the process boundary are listed under [`Task`].
/// * **Registration** happens where the attribute is: the type is runnable in worker processes.
///
/// Refused at compile time, each with what to write instead: `async fn` and `unsafe fn`, generic
/// functions, methods (`self`), parameters that are patterns rather than names, and parameter or
/// return types that borrow (`&str`, `&[u8]`, `Vec<&T>`: task arguments travel to another
/// process, so take `String`, `Vec<u8>`, `T`) or are not concrete (`impl Trait`, `dyn Trait`,
/// function pointers).
///
/// ```compile_fail
/// #[workpool::task]
/// fn count(text: &str) -> usize { // error: take an owned value (String, Vec<u8>, T) ...
///     text.len()
/// }
/// ```
pub use workpool_macros::task;

/// What `#[workpool::task]` asks of each parameter type, so that a type that is not serde is
/// reported at the parameter, with what to do (hidden; not for direct use).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task parameter: it must implement serde's `Serialize` and `Deserialize`, and `Send`",
    label = "task arguments travel to a worker process, so this type must be Serialize + Deserialize + Send + 'static",
    note = "derive them on the type: `#[derive(serde::Serialize, serde::Deserialize)]`, or take a type that has them"
)]
pub trait TaskArgument: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> TaskArgument for T {}

/// What `#[workpool::task]` asks of the return type (hidden; not for direct use).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's result: it must implement serde's `Serialize` and `Deserialize`, and `Send`",
    label = "a task's result travels back from a worker process, so this type must be Serialize + Deserialize + Send + 'static",
    note = "derive them on the type: `#[derive(serde::Serialize, serde::Deserialize)]`, or return a type that has them"
)]
pub trait TaskOutput: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> TaskOutput for T {}

/// Compiles only for a [`TaskArgument`]: `#[workpool::task]` names it once per parameter type,
/// as `const _: fn() = assert_task_argument::<T>;`. (A bound checked in a function body, rather
/// than in a type, is reported with the message of `TaskArgument` itself.)
#[doc(hidden)]
pub fn assert_task_argument<T: TaskArgument>() {}

/// Compiles only for a [`TaskOutput`]: `#[workpool::task]` names it for the return type.
#[doc(hidden)]
pub fn assert_task_output<T: TaskOutput>() {}

/// What the worker did with one task frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RunStatus {
    Ok,
    Panic { index: u32, message: String, location: String },
    Decode(String),
    Encode(String),
}

type RunFn = fn(payload: &[u8], count: u32, out: &mut Vec<u8>) -> RunStatus;

/// One registered task type (built by [`register!`](crate::register); not for direct use).
#[doc(hidden)]
pub struct Registration {
    name: fn() -> &'static str,
    type_id: fn() -> TypeId,
    run: RunFn,
}

impl Registration {
    /// The registration of `T`.
    #[doc(hidden)]
    pub const fn of<T: Task>() -> Self {
        Registration { name: std::any::type_name::<T>, type_id: TypeId::of::<T>, run: run_task::<T> }
    }
}

inventory::collect!(Registration);

/// A registered task as the executor sees it.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) name: &'static str,
    pub(crate) key: u64,
    pub(crate) run: RunFn,
}

struct Index {
    by_type: HashMap<TypeId, Entry>,
    by_key: HashMap<u64, Entry>,
    names: Vec<&'static str>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = Index { by_type: HashMap::new(), by_key: HashMap::new(), names: Vec::new() };
        for reg in inventory::iter::<Registration> {
            let name = (reg.name)();
            let entry = Entry { name, key: fnv1a(name.as_bytes()), run: reg.run };
            if let Some(other) = index.by_key.get(&entry.key) {
                assert!(
                    other.name == name,
                    "workpool: task names {name} and {} hash to the same key; rename one of them",
                    other.name
                );
                continue;
            }
            index.by_type.insert((reg.type_id)(), entry);
            index.by_key.insert(entry.key, entry);
            index.names.push(name);
        }
        index.names.sort_unstable();
        index
    })
}

/// The registry entry of `T`, if it was registered.
pub(crate) fn entry_of<T: Task>() -> Option<Entry> {
    index().by_type.get(&TypeId::of::<T>()).copied()
}

/// The entry a worker runs for a wire key.
pub(crate) fn entry_by_key(key: u64) -> Option<Entry> {
    index().by_key.get(&key).copied()
}

/// Sorted names of every registered task (part of the binary's fingerprint).
pub(crate) fn registered_names() -> &'static [&'static str] {
    &index().names
}

/// 64-bit FNV-1a: a stable hash (same input, same output on every run and machine).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

thread_local! {
    /// Where the last panic on this thread happened, recorded by the worker's panic hook.
    pub(crate) static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Where a worker process counts the tasks it begins (one per task of a batch): a word of its
/// claim ring, which the executor reads to time each task of a batch against `task_timeout`
/// (null outside worker processes). Set once by the worker before it serves.
pub(crate) static TASKS_BEGUN: AtomicPtr<[AtomicU64; 2]> = AtomicPtr::new(std::ptr::null_mut());

fn begin_task() {
    let words = TASKS_BEGUN.load(Ordering::Relaxed);
    if !words.is_null() {
        // SAFETY: set by the worker to two words of its claim ring, mapped for the process's life.
        let [count, at] = unsafe { &*words };
        at.store(crate::sys::monotonic_ns(), Ordering::Relaxed);
        count.fetch_add(1, Ordering::Release);
    }
}

/// Decodes `count` arguments of `T` from `payload`, runs each, and appends the encoded outputs to
/// `out`. Stops at the first panic or codec error.
fn run_task<T: Task>(payload: &[u8], count: u32, out: &mut Vec<u8>) -> RunStatus {
    let mut arguments = codec::Values::new(payload);
    for index in 0..count {
        // A `Deserialize` or `Serialize` impl may panic: that is a codec failure of this task,
        // not a dead worker.
        let task: T = match unwind::halt_unwinding(|| arguments.next()) {
            Ok(Ok(task)) => task,
            Ok(Err(e)) => return RunStatus::Decode(e),
            Err(payload) => {
                return RunStatus::Decode(format!(
                    "the argument's Deserialize panicked: {}",
                    unwind::payload_message(&*payload)
                ))
            }
        };
        begin_task();
        // The task's own code runs outside its frame's out-of-band context.
        let output = match unwind::halt_unwinding(|| crate::oob::suspend(|| task.run())) {
            Ok(output) => output,
            Err(payload) => {
                let location = PANIC_LOCATION.with(|l| l.borrow_mut().take()).unwrap_or_default();
                return RunStatus::Panic { index, message: unwind::payload_message(&*payload), location };
            }
        };
        let mark = out.len();
        match unwind::halt_unwinding(|| codec::encode_into(&output, out)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return RunStatus::Encode(e),
            Err(payload) => {
                out.truncate(mark);
                return RunStatus::Encode(format!(
                    "the result's Serialize panicked: {}",
                    unwind::payload_message(&*payload)
                ));
            }
        }
    }
    match arguments.finish() {
        Ok(()) => RunStatus::Ok,
        Err(e) => RunStatus::Decode(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize)]
    struct Double(u32);
    impl Task for Double {
        type Output = u32;
        fn run(self) -> u32 {
            assert!(self.0 != 13, "unlucky {}", self.0);
            self.0 * 2
        }
    }
    crate::register!(Double);

    #[derive(Serialize, Deserialize)]
    struct Unregistered;
    impl Task for Unregistered {
        type Output = ();
        fn run(self) {}
    }

    fn run_batch(args: &[u32]) -> (RunStatus, Vec<u32>) {
        let mut payload = Vec::new();
        for a in args {
            codec::encode_into(&Double(*a), &mut payload).unwrap();
        }
        let entry = entry_of::<Double>().expect("registered");
        let mut out = Vec::new();
        let status = (entry.run)(&payload, args.len() as u32, &mut out);
        let done = match &status {
            RunStatus::Panic { index, .. } => *index as usize,
            _ => args.len(),
        };
        (status, codec::decode_many(&out, done).unwrap())
    }

    #[test]
    fn registry_finds_registered_types_only() {
        let entry = entry_of::<Double>().unwrap();
        assert!(entry.name.ends_with("Double"));
        assert_eq!(entry_by_key(entry.key).unwrap().name, entry.name);
        assert!(entry_of::<Unregistered>().is_none());
        assert!(entry_by_key(12345).is_none());
        assert!(registered_names().contains(&entry.name));
    }

    #[test]
    fn batches_run_in_order_and_stop_at_a_panic() {
        assert_eq!(run_batch(&[1, 2, 3]), (RunStatus::Ok, vec![2, 4, 6]));
        let (status, done) = run_batch(&[1, 13, 3]);
        assert!(matches!(status, RunStatus::Panic { index: 1, ref message, .. } if message == "unlucky 13"));
        assert_eq!(done, vec![2]);
    }

    #[test]
    fn garbage_arguments_are_decode_errors() {
        let entry = entry_of::<Double>().unwrap();
        let mut out = Vec::new();
        assert!(matches!((entry.run)(&[], 1, &mut out), RunStatus::Decode(_)));
        assert!(matches!((entry.run)(&[1, 2], 1, &mut out), RunStatus::Decode(_)), "trailing bytes");
    }
}
