//! The out-of-band context: which segments a frame being encoded carries, and which ones a
//! frame being decoded brought.
//!
//! The process codec sets it around an encode or a decode (thread-local: serde gives a
//! `Serialize` impl no other way to reach its caller), [`Bytes`](crate::Bytes)'s impls use it:
//!
//! * encoding: [`encoding`] collects the segments [`register`] is given, in order; the caller
//!   passes them beside the frame (SCM_RIGHTS) and the encoded value names each by its index;
//! * decoding: [`decoding`] hands out the segments that came with the frame by index ([`take`]);
//! * [`suspend`] clears both while a task runs, so that a task which itself submits work (to
//!   another executor) encodes into its own frames, not into the one its worker is building.
//!
//! Outside [`in_codec`] (serde_json, a user's own bincode call) a `Bytes` is plain bytes.
//! With `encoding(false, ..)` (a transport that cannot pass descriptors, e.g. TCP) every
//! `Bytes` travels inline in the frame.

pub(crate) mod pool;
pub(crate) mod segment;

use segment::Segment;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// Set by a remote worker's supervisor in the environment of the worker it starts: that worker's
/// channel is relayed over TCP, which carries no descriptors, so it sends every buffer inline.
pub(crate) const INLINE_ONLY_VAR: &str = "WORKPOOL_INLINE_DATA";

/// Whether this worker process may send buffers out of band (false under a remote supervisor).
pub(crate) fn worker_out_of_band() -> bool {
    static OUT_OF_BAND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OUT_OF_BAND.get_or_init(|| std::env::var_os(INLINE_ONLY_VAR).is_none())
}

/// The most descriptors one frame carries (the kernel's SCM_MAX_FD); a frame with more
/// out-of-band buffers sends the rest inline.
pub(crate) const MAX_FDS: usize = 253;

/// A segment received beside a frame: mapped, or why it could not be.
pub(crate) type Received = Result<Arc<Segment>, String>;

thread_local! {
    /// Depth of process-codec calls on this thread.
    static IN_CODEC: Cell<u32> = const { Cell::new(0) };
    /// Segments the frame being encoded carries; `None`: inline only.
    static OUTGOING: RefCell<Option<Vec<Arc<Segment>>>> = const { RefCell::new(None) };
    /// Segments the frame being decoded brought; `None`: it brought none (or no frame).
    static INCOMING: RefCell<Option<Vec<Received>>> = const { RefCell::new(None) };
    /// What the frame being encoded keeps alive until its task is done (the shared values it
    /// names); `None`: nothing is collected.
    static KEEP: RefCell<Option<Kept>> = const { RefCell::new(None) };
}

/// A value a task frame keeps alive (see [`keeping`]).
pub(crate) type Keep = Arc<dyn std::any::Any + Send + Sync>;

/// What one task frame keeps alive, and the shared values among them it names by id only,
/// with their encodings: its feeder sends those ahead (`SHARE`), once per worker process.
#[derive(Default, Clone)]
pub(crate) struct Kept {
    pub(crate) alive: Vec<Keep>,
    pub(crate) by_id: Vec<(u64, Arc<[u8]>)>,
}

/// Runs `f` (an encoding) and returns, beside its result, the values it asked to keep alive
/// ([`keep_alive`]): the task's envelope holds them until the task is done, so that a shared
/// value is released only once no task that carries it is left (`bytes/shared.rs`).
pub(crate) fn keeping<R>(f: impl FnOnce() -> R) -> (R, Kept) {
    let restore = replace(&KEEP, Some(Kept::default()));
    let result = f();
    let kept = KEEP.with(|slot| slot.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    (result, kept)
}

/// Keeps `value` alive with the frame being encoded, inside [`keeping`] (elsewhere: nothing).
pub(crate) fn keep_alive(value: Keep) {
    KEEP.with(|slot| {
        if let Some(kept) = slot.borrow_mut().as_mut() {
            if !kept.alive.iter().any(|k| Arc::ptr_eq(k, &value)) {
                kept.alive.push(value);
            }
        }
    });
}

/// Runs `f` outside any [`keeping`] (a shared value's own encoding, made once and reused by
/// every frame that names it: what it holds goes inline).
pub(crate) fn not_keeping<R>(f: impl FnOnce() -> R) -> R {
    let _restore = replace(&KEEP, None);
    f()
}

/// Whether a shared value may be named by id in the frame being encoded (inside [`keeping`]:
/// a task frame, whose feeder sends what it names ahead).
pub(crate) fn can_name_by_id() -> bool {
    KEEP.with(|slot| slot.borrow().is_some())
}

/// The frame being encoded names shared value `id`, whose encoding is `encoded`, by id
/// (inside [`keeping`]; the value itself is kept alive by [`keep_alive`]).
pub(crate) fn named_by_id(id: u64, encoded: &Arc<[u8]>) {
    KEEP.with(|slot| {
        if let Some(kept) = slot.borrow_mut().as_mut() {
            if !kept.by_id.iter().any(|(known, _)| *known == id) {
                kept.by_id.push((id, encoded.clone()));
            }
        }
    });
}

/// Restores a thread-local on drop (also when the closure panics).
struct Restore<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    old: Option<T>,
}

impl<T> Drop for Restore<T> {
    fn drop(&mut self) {
        let old = self.old.take();
        self.key.with(|slot| *slot.borrow_mut() = old);
    }
}

fn replace<T>(key: &'static std::thread::LocalKey<RefCell<Option<T>>>, new: Option<T>) -> Restore<T> {
    Restore { key, old: key.with(|slot| slot.replace(new)) }
}

/// Runs `f` as the process codec (a `Bytes` writes its tagged form).
pub(crate) fn in_codec<R>(f: impl FnOnce() -> R) -> R {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            IN_CODEC.with(|d| d.set(d.get() - 1));
        }
    }
    IN_CODEC.with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    f()
}

/// True inside [`in_codec`].
pub(crate) fn is_process_codec() -> bool {
    IN_CODEC.with(|d| d.get() > 0)
}

/// Runs `f` (an encode) and returns the segments it registered. With `out_of_band` false every
/// buffer is written inline.
pub(crate) fn encoding<R>(out_of_band: bool, f: impl FnOnce() -> R) -> (R, Vec<Arc<Segment>>) {
    let restore = replace(&OUTGOING, out_of_band.then(Vec::new));
    let result = f();
    let segments = OUTGOING.with(|slot| slot.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    (result, segments)
}

/// Runs `f` (a decode) with `received` available to [`take`].
pub(crate) fn decoding<R>(received: Vec<Received>, f: impl FnOnce() -> R) -> R {
    let _restore = replace(&INCOMING, Some(received));
    f()
}

/// Runs `f` (a task's own code) outside any codec context, then restores it.
pub(crate) fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let depth = IN_CODEC.with(|d| d.replace(0));
    let _outgoing = replace(&OUTGOING, None);
    let _incoming = replace(&INCOMING, None);
    let result = f();
    IN_CODEC.with(|d| d.set(depth));
    result
}

/// Adds `segment` to the frame being encoded; its index there, or `None` where the buffer must
/// go inline (no out-of-band context, or the frame carries [`MAX_FDS`] already). The same
/// segment twice in one frame is passed once.
pub(crate) fn register(segment: &Arc<Segment>) -> Option<u32> {
    OUTGOING.with(|slot| {
        let mut slot = slot.borrow_mut();
        let segments = slot.as_mut()?;
        if let Some(i) = segments.iter().position(|s| Arc::ptr_eq(s, segment)) {
            return Some(i as u32);
        }
        (segments.len() < MAX_FDS).then(|| {
            segments.push(segment.clone());
            segments.len() as u32 - 1
        })
    })
}

/// True when a buffer encoded now may go out of band (an out-of-band context with room).
pub(crate) fn can_register() -> bool {
    OUTGOING.with(|slot| slot.borrow().as_ref().is_some_and(|s| s.len() < MAX_FDS))
}

/// Segment `index` of the frame being decoded.
pub(crate) fn take(index: u32) -> Result<Arc<Segment>, String> {
    INCOMING.with(|slot| match slot.borrow().as_ref().and_then(|r| r.get(index as usize)) {
        Some(Ok(segment)) => Ok(segment.clone()),
        Some(Err(why)) => Err(format!("out-of-band buffer {index} could not be mapped: {why}")),
        None => Err(format!(
            "out-of-band buffer {index} is not among the descriptors that came with the frame \
             (the data names a shared-memory segment it did not bring)"
        )),
    })
}
