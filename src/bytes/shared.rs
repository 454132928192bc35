//! [`Shared`]: read-only data many tasks use, sent to each worker process once.
//!
//! **Wire form.** In the process codec a `Shared` is a triple: a tag, its id, then
//!   0: the encoded value inline (a result a worker sends back), or
//!   1: (u32 index of its segment among the frame's descriptors, u64 length), or
//!   2: nothing: a task frame without descriptors (a remote worker) names the value by id,
//!      and its feeder sends the encoding ahead in a `SHARE` frame, once per worker process
//!      (`oob::keeping` collects what a frame names so).
//! The value is encoded once, the first time it is sent, into a sealed memfd segment (for a
//! `Shared<Bytes>`, the segment *is* the buffer's own: nothing is encoded). Each task frame
//! then carries the id and the descriptor: a few bytes and one descriptor per task.
//!
//! **The worker's cache.** A worker process keeps what it decoded by id ([`CACHE`]): a task
//! that names an id the worker already has gets that value (the descriptor that came with
//! the frame is unmapped and closed unused); only a missing id is decoded.
//!
//! **Release.** A worker keeps a value as long as the parent does. A value that was sent is
//! kept alive by the tasks that carry it until they are done (each task's envelope holds a
//! clone, [`oob::keeping`]); when the last clone in the parent is gone, its id goes into the
//! process's release log ([`releases`], [`released_since`]), and every feeder tells its worker
//! with a `FORGET` frame — before its next task, or within 100 ms while it idles — and the
//! worker drops its copy ([`forget`]). A worker started after the release never receives the
//! value: no task that carries it is left.

use super::segment::Segment;
use super::{oob, Bytes, Raw, RawBuf, Repr};
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Released ids the log keeps; a feeder further behind tells its worker to forget everything.
const LOG_KEEPS: usize = 1 << 16;

/// Read-only data that many tasks use — a lookup table, a model, a dataset — sent to each
/// worker process once instead of with every task.
///
/// `Clone` is an `Arc` clone. As a task field a `Shared` costs a few bytes per task: its value
/// is encoded once, the first time it is sent, into a sealed shared-memory segment (`memfd`),
/// and each task carries only its id and that segment's descriptor. Each worker process
/// decodes it at most once and keeps it in a cache for the tasks that follow; a
/// `Shared<Bytes>` is not even decoded: the worker maps the segment, no copy at all.
///
/// * **Release.** A worker keeps its copy while the parent holds a clone (however many tasks
///   without it come in between), and drops it once the parent's last clone and the last
///   task that carried it are gone: the executor tells each worker, within 100 ms even while
///   the worker idles. The memory of the segment is freed with its last descriptor and
///   mapping, whatever dies.
/// * **Threads.** On [`Backend::Threads`](crate::Backend) and a
///   [`ThreadPool`](crate::ThreadPool) nothing is serialized: a `Shared` is an `Arc`.
/// * **Remote workers** (a [`Launcher`](crate::Launcher) that is not local) cannot receive
///   descriptors: there each task names the value by id, and the executor sends its encoding
///   ahead of the first task that names it on each worker process: once per worker, not once
///   per task.
/// * **Elsewhere** (serde_json, a user's own bincode call) it serializes as its value.
///
/// A `Bytes` or a `Shared` inside the value of a `Shared<T>` (other than `Shared<Bytes>`) is
/// copied into the segment and copied again when a worker decodes the value.
///
/// Only worker processes cache: a `Shared` a task returns is decoded by the parent each time
/// it arrives. Pages of a cached `Shared<Bytes>` that a worker has read count in its resident
/// size (they are shared, not copied), so a `max_worker_memory` below the dataset's size retires
/// the worker after each task.
///
/// # Examples
/// ```
/// use workpool::{Bytes, Shared};
///
/// let table = Shared::new(vec![1u64, 2, 3]);
/// let again = table.clone(); // cheap: both name one value
/// assert_eq!(again.iter().sum::<u64>(), 6);
///
/// // A large byte dataset: mapped by each worker, never copied there.
/// let dataset = Shared::new(Bytes::from(vec![7u8; 1 << 20]));
/// assert_eq!(dataset.len(), 1 << 20);
/// ```
///
/// As a task field:
/// ```no_run
/// use workpool::{Executor, Shared};
///
/// #[workpool::task]
/// fn lookup(table: Shared<Vec<u64>>, i: usize) -> u64 {
///     table[i]
/// }
///
/// #[workpool::main]
/// fn main() {
///     let ex = Executor::builder().workers(2).build().unwrap();
///     let table = Shared::new((0..1_000_000u64).collect::<Vec<_>>());
///     let sum: u64 = ex.map((0..100).map(|i| Lookup { table: table.clone(), i })).map(Result::unwrap).sum();
///     assert_eq!(sum, (0..100u64).sum::<u64>());
/// }
/// ```
pub struct Shared<T>(Arc<Inner<T>>);

struct Inner<T> {
    id: u64,
    /// Sent to a worker (in the parent): its release goes into the log when it is dropped.
    sent: AtomicBool,
    value: T,
    /// The value's encoding, made the first time it goes out of band (or received).
    segment: OnceLock<Arc<Segment>>,
    /// The value's encoding, made the first time it is named by id (a transport without
    /// descriptors: a remote worker), sent ahead of the first task on each worker.
    inline: OnceLock<Arc<[u8]>>,
}

impl<T> Shared<T> {
    /// Wraps `value`; it is encoded the first time it is sent to a worker process.
    ///
    /// # Examples
    /// ```
    /// let shared = workpool::Shared::new(String::from("model"));
    /// assert_eq!(*shared, "model");
    /// ```
    pub fn new(value: T) -> Shared<T> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Unique among the processes alive together: this process's id and a counter.
        let id = u64::from(std::process::id()) << 32 | (NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff);
        Shared(Arc::new(Inner {
            id,
            sent: AtomicBool::new(false),
            value,
            segment: OnceLock::new(),
            inline: OnceLock::new(),
        }))
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        if self.sent.load(Ordering::Relaxed) {
            release(self.id);
        }
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T> AsRef<T> for Shared<T> {
    fn as_ref(&self) -> &T {
        &self.0.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Shared").field(&self.0.value).finish()
    }
}

/// How many shared values this process keeps in its cache of received [`Shared`] values (a
/// worker process's view; 0 in a process that is not a worker). For tests and diagnostics: it
/// shows a worker let go of values the parent dropped.
///
/// # Examples
/// ```
/// assert_eq!(workpool::shared_values_cached(), 0); // not a worker process
/// ```
pub fn shared_values_cached() -> usize {
    let cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    cache.entries.len() + cache.ahead.len()
}

// ===== the per-process cache =====

/// Set by the worker loop: only a worker process caches what it receives (a parent decoding a
/// result keeps no cache it would never clean).
static IN_WORKER: AtomicBool = AtomicBool::new(false);

struct Cached {
    value: Arc<dyn Any + Send + Sync>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<u64, Cached>,
    /// Values sent ahead by id (`SHARE`), not decoded yet: the first task that names one
    /// decodes it (only it knows the type) into `entries`.
    ahead: HashMap<u64, Arc<[u8]>>,
}

/// A `SHARE` from the executor: the encoding of shared value `id`, for the tasks that name it.
pub(crate) fn sent(id: u64, encoded: &[u8]) {
    let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    if !cache.entries.contains_key(&id) {
        cache.ahead.insert(id, encoded.into());
    }
}

/// The encoding of shared value `id` sent ahead, taken out of the waiting ones.
fn sent_ahead(id: u64) -> Option<Arc<[u8]>> {
    cache().lock().unwrap_or_else(|p| p.into_inner()).ahead.remove(&id)
}

/// The values this process received, by id.
static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();

fn cache() -> &'static Mutex<Cache> {
    CACHE.get_or_init(Default::default)
}

/// Called by the worker loop before each task: from now on this process caches what it
/// receives.
pub(crate) fn in_worker() {
    IN_WORKER.store(true, Ordering::Relaxed);
}

/// A `FORGET` from the executor: drops the cached values with these ids, or every one when
/// `ids` is empty (the executor's log no longer reached back far enough). Dropped outside the
/// lock.
pub(crate) fn forget(ids: &[u64]) {
    let dropped: Vec<Cached> = {
        let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
        if ids.is_empty() {
            cache.ahead.clear();
            cache.entries.drain().map(|(_, e)| e).collect()
        } else {
            ids.iter().for_each(|id| drop(cache.ahead.remove(id)));
            ids.iter().filter_map(|id| cache.entries.remove(id)).collect()
        }
    };
    drop(dropped);
}

fn cached<T: Send + Sync + 'static>(id: u64) -> Option<Shared<T>> {
    if !IN_WORKER.load(Ordering::Relaxed) {
        return None;
    }
    let cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    let entry = cache.entries.get(&id)?;
    entry.value.clone().downcast::<Inner<T>>().ok().map(Shared)
}

fn remember<T: Send + Sync + 'static>(shared: Shared<T>) -> Shared<T> {
    if !IN_WORKER.load(Ordering::Relaxed) {
        return shared;
    }
    let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    let entry = cache.entries.entry(shared.0.id).or_insert_with(|| Cached { value: shared.0.clone() });
    entry.value.clone().downcast::<Inner<T>>().map(Shared).unwrap_or(shared)
}

// ===== the parent's release log =====

/// Ids of values that were sent and are gone, in order; `first` is the sequence number of the
/// oldest one kept.
#[derive(Default)]
struct ReleaseLog {
    ids: std::collections::VecDeque<u64>,
    first: u64,
}

static LOG: Mutex<ReleaseLog> = Mutex::new(ReleaseLog { ids: std::collections::VecDeque::new(), first: 0 });
/// Releases logged so far (the sequence number of the next one): what a feeder compares its
/// own count with, one relaxed load per round.
static RELEASES: AtomicU64 = AtomicU64::new(0);

fn release(id: u64) {
    let mut log = LOG.lock().unwrap_or_else(|p| p.into_inner());
    log.ids.push_back(id);
    if log.ids.len() > LOG_KEEPS {
        log.ids.pop_front();
        log.first += 1;
    }
    RELEASES.fetch_add(1, Ordering::Release);
}

/// How many values were released so far (see the module docs).
pub(crate) fn releases() -> u64 {
    RELEASES.load(Ordering::Acquire)
}

/// The ids released after the first `seen` releases, and the count they bring it to; `None`
/// for the ids when the log no longer reaches back to `seen` (then: forget everything).
pub(crate) fn released_since(seen: u64) -> (Option<Vec<u64>>, u64) {
    let log = LOG.lock().unwrap_or_else(|p| p.into_inner());
    let now = log.first + log.ids.len() as u64;
    if seen < log.first {
        return (None, now);
    }
    (Some(log.ids.iter().skip((seen - log.first) as usize).copied().collect()), now)
}

// ===== encoding and decoding the value =====

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Shared<T> {
    /// The value's encoding: a `Bytes`'s own bytes, anything else in the process codec with
    /// every buffer inside written inline.
    fn encode(&self) -> Result<Vec<u8>, String> {
        if let Some(bytes) = (&self.0.value as &dyn Any).downcast_ref::<Bytes>() {
            return Ok(bytes.to_vec());
        }
        let mut out = Vec::new();
        oob::not_keeping(|| oob::encoding(false, || crate::codec::encode_into(&self.0.value, &mut out))).0?;
        Ok(out)
    }

    /// The value's own bytes in its segment (a `Shared<Bytes>` may use fewer than its
    /// recyclable segment holds).
    fn own_bytes<'a>(&self, segment: &'a Segment) -> &'a [u8] {
        match (&self.0.value as &dyn Any).downcast_ref::<Bytes>() {
            Some(bytes) => &segment.as_slice()[..bytes.len()],
            None => segment.as_slice(),
        }
    }

    /// The segment the value travels in, made on first use.
    fn segment(&self) -> Result<Arc<Segment>, String> {
        if let Some(segment) = self.0.segment.get() {
            return Ok(segment.clone());
        }
        let made = match (&self.0.value as &dyn Any).downcast_ref::<Bytes>() {
            Some(bytes) if !bytes.is_empty() => bytes.segment().map_err(|e| e.to_string())?,
            _ => {
                let encoded = self.encode()?;
                if encoded.is_empty() {
                    return Err("an empty encoding goes inline".into());
                }
                Arc::new(Segment::create(&encoded).map_err(|e| {
                    format!(
                        "a {}-byte shared value could not be put in shared memory ({e}); the system is out of \
                         memory or descriptors (RLIMIT_NOFILE, a memory cgroup): free some, or share less",
                        encoded.len()
                    )
                })?)
            }
        };
        Ok(self.0.segment.get_or_init(|| made).clone())
    }

    /// The value from its encoding `bytes` (which lie in `segment` when it is given).
    fn decode(id: u64, bytes: &[u8], segment: Option<Arc<Segment>>) -> Result<Shared<T>, String> {
        let value: T = if std::any::TypeId::of::<T>() == std::any::TypeId::of::<Bytes>() {
            let bytes = match &segment {
                Some(segment) => Bytes(Repr::Mapped(segment.clone(), bytes.len())),
                None => Bytes::from(bytes),
            };
            *(Box::new(bytes) as Box<dyn Any>).downcast::<T>().expect("T is Bytes")
        } else {
            let (value, used) = oob::decoding(Vec::new(), || crate::codec::decode::<T>(bytes))
                .map_err(|e| format!("the shared value could not be decoded: {e}"))?;
            if used != bytes.len() {
                return Err(format!(
                    "the shared value's encoding holds {} bytes, of which a `{}` used {used}: the parent and \
                     the worker disagree on the type; build both from the same code",
                    bytes.len(),
                    std::any::type_name::<T>()
                ));
            }
            value
        };
        let inner =
            Inner { id, sent: AtomicBool::new(false), value, segment: OnceLock::new(), inline: OnceLock::new() };
        if let Some(segment) = segment {
            let _ = inner.segment.set(segment);
        }
        Ok(Shared(Arc::new(inner)))
    }
}

const INLINE: u8 = 0;
const OUT_OF_BAND: u8 = 1;
const BY_ID: u8 = 2;
/// The largest encoding a `SHARE` frame carries: a frame's limit (the codec's), less room for
/// its header (13 bytes, `process/wire.rs`).
const SHARE_MAX: usize = crate::codec::LIMIT - 64;

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !oob::is_process_codec() {
            return self.0.value.serialize(serializer);
        }
        // A worker sends values back, never releases them: only the parent logs releases.
        if !IN_WORKER.load(Ordering::Relaxed) {
            self.0.sent.store(true, Ordering::Relaxed);
        }
        // The task carrying it keeps it alive until it is done (its release comes after).
        oob::keep_alive(self.0.clone());
        let mut triple = serializer.serialize_tuple(3)?;
        if oob::can_register() {
            let segment = self.segment();
            if let Ok(segment) = &segment {
                if let Some(index) = oob::register(segment) {
                    triple.serialize_element(&OUT_OF_BAND)?;
                    triple.serialize_element(&self.0.id)?;
                    // A `Shared<Bytes>` may use fewer bytes than its (recyclable) segment holds.
                    let len = match (&self.0.value as &dyn Any).downcast_ref::<Bytes>() {
                        Some(bytes) => bytes.len(),
                        None => segment.len(),
                    };
                    triple.serialize_element(&(index, len as u64))?;
                    return triple.end();
                }
            }
            if let Err(why) = segment {
                if !why.starts_with("an empty") {
                    return Err(serde::ser::Error::custom(why));
                }
            }
        }
        if oob::can_name_by_id() {
            // A task frame without descriptors (a remote worker): the id only; the feeder sends
            // the value ahead, once per worker process.
            let encoded = match self.0.inline.get() {
                Some(encoded) => encoded,
                None => {
                    let encoded: Arc<[u8]> = match self.0.segment.get() {
                        Some(segment) => self.own_bytes(segment).into(),
                        None => self.encode().map_err(serde::ser::Error::custom)?.into(),
                    };
                    if encoded.len() > SHARE_MAX {
                        return Err(serde::ser::Error::custom(format!(
                            "a shared value of {} bytes is over the 1 GiB a frame holds, and this transport \
                             cannot pass shared memory: share less at once",
                            encoded.len()
                        )));
                    }
                    self.0.inline.get_or_init(|| encoded)
                }
            };
            oob::named_by_id(self.0.id, encoded);
            triple.serialize_element(&BY_ID)?;
            triple.serialize_element(&self.0.id)?;
            triple.serialize_element(&())?;
            return triple.end();
        }
        let encoded = match self.0.segment.get() {
            Some(segment) => self.own_bytes(segment).to_vec(),
            None => self.encode().map_err(serde::ser::Error::custom)?,
        };
        triple.serialize_element(&INLINE)?;
        triple.serialize_element(&self.0.id)?;
        triple.serialize_element(&Raw(&encoded))?;
        triple.end()
    }
}

impl<'de, T: Serialize + DeserializeOwned + Send + Sync + 'static> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !oob::is_process_codec() {
            return T::deserialize(deserializer).map(Shared::new);
        }
        struct Triple<T>(PhantomData<T>);
        impl<'de, T: Serialize + DeserializeOwned + Send + Sync + 'static> Visitor<'de> for Triple<T> {
            type Value = Shared<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a workpool Shared (tag, id and body)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shared<T>, A::Error> {
                let missing = || de::Error::custom("a Shared cut short");
                let tag = seq.next_element::<u8>()?.ok_or_else(missing)?;
                let id = seq.next_element::<u64>()?.ok_or_else(missing)?;
                match tag {
                    INLINE => {
                        let body = seq.next_element::<RawBuf>()?.ok_or_else(missing)?.0;
                        if let Some(shared) = cached::<T>(id) {
                            return Ok(shared);
                        }
                        Shared::decode(id, &body, None).map(remember).map_err(de::Error::custom)
                    }
                    OUT_OF_BAND => {
                        let (index, len): (u32, u64) = seq.next_element()?.ok_or_else(missing)?;
                        if let Some(shared) = cached::<T>(id) {
                            // The descriptor that came with the frame is unmapped and closed
                            // with the frame's other segments.
                            return Ok(shared);
                        }
                        let segment = oob::take(index).map_err(de::Error::custom)?;
                        if (segment.len() as u64) < len {
                            return Err(de::Error::custom(format!(
                                "the shared value's segment {index} holds {} bytes, fewer than the {len} announced",
                                segment.len()
                            )));
                        }
                        let bytes = &segment.as_slice()[..len as usize];
                        Shared::decode(id, bytes, Some(segment.clone())).map(remember).map_err(de::Error::custom)
                    }
                    BY_ID => {
                        seq.next_element::<()>()?.ok_or_else(missing)?;
                        if let Some(shared) = cached::<T>(id) {
                            return Ok(shared);
                        }
                        let Some(body) = sent_ahead(id) else {
                            return Err(de::Error::custom(format!(
                                "shared value {id:#x} is named by id, and was not sent to this worker ahead of the task"
                            )));
                        };
                        Shared::decode(id, &body, None).map(remember).map_err(de::Error::custom)
                    }
                    tag => Err(de::Error::custom(format!("unknown Shared tag {tag}"))),
                }
            }
        }
        deserializer.deserialize_tuple(3, Triple(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + DeserializeOwned + Send + Sync + 'static>(value: &T) -> (T, usize) {
        let mut frame = Vec::new();
        let (result, segments) = oob::encoding(true, || crate::codec::encode_into(value, &mut frame));
        result.unwrap();
        let count = segments.len();
        let received: Vec<oob::Received> = segments
            .iter()
            .map(|s| Segment::receive_from_parent(s.fd().try_clone_to_owned().unwrap()).map_err(|e| e.to_string()))
            .collect();
        let (back, _) = oob::decoding(received, || crate::codec::decode::<T>(&frame)).unwrap();
        (back, count)
    }

    #[test]
    fn a_shared_vec_goes_out_of_band_by_id_and_comes_back_equal() {
        let shared = Shared::new((0..10_000u64).collect::<Vec<_>>());
        let (back, segments) = round_trip(&shared);
        assert_eq!(segments, 1);
        assert_eq!(*back, *shared);
        // The frame itself holds a few bytes: tag, id, index and length.
        let mut frame = Vec::new();
        oob::encoding(true, || crate::codec::encode_into(&shared, &mut frame)).0.unwrap();
        assert!(frame.len() < 24, "{} bytes", frame.len());
    }

    #[test]
    fn a_shared_bytes_is_its_own_segment_and_decodes_without_a_copy() {
        let shared = Shared::new(Bytes::from(vec![3u8; 1 << 20]));
        let (back, segments) = round_trip(&shared);
        assert_eq!(segments, 1);
        assert!(matches!(back.0.value.0, Repr::Mapped(..)), "the received Bytes maps the segment");
        assert_eq!(*back, *shared);
    }

    #[test]
    fn without_descriptors_the_value_goes_inline_and_outside_the_codec_as_itself() {
        let shared = Shared::new(vec![String::from("a"), String::from("b")]);
        let mut frame = Vec::new();
        let (result, segments) = oob::encoding(false, || crate::codec::encode_into(&shared, &mut frame));
        result.unwrap();
        assert!(segments.is_empty());
        let (back, _) = crate::codec::decode::<Shared<Vec<String>>>(&frame).unwrap();
        assert_eq!(*back, *shared);
        assert_eq!(serde_json::to_string(&shared).unwrap(), r#"["a","b"]"#);
        let json: Shared<Vec<String>> = serde_json::from_str(r#"["c"]"#).unwrap();
        assert_eq!(*json, vec!["c".to_string()]);
    }

    #[test]
    fn an_undecodable_value_names_the_shared_value() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u32(7)
            }
        }
        impl<'de> Deserialize<'de> for Refuses {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                u32::deserialize(d)?;
                Err(de::Error::custom("refused on purpose"))
            }
        }
        let shared = Shared::new(Refuses);
        let mut frame = Vec::new();
        oob::encoding(false, || crate::codec::encode_into(&shared, &mut frame)).0.unwrap();
        let err = crate::codec::decode::<Shared<Refuses>>(&frame).err().expect("refused");
        assert!(err.contains("shared value could not be decoded") && err.contains("refused on purpose"), "{err}");
    }
}
