//! [`Bytes`]: byte buffers that cross the process boundary without being copied.
//!
//! Small buffers travel inline in the task's frame as one raw copy. From
//! [`OUT_OF_BAND_MIN`] bytes on, a buffer is written once into a sealed memfd segment
//! (`segment.rs`), whose descriptor travels beside the frame (SCM_RIGHTS) and which the
//! receiver maps read-only: no copy on the receiving side, in either direction. A buffer that
//! already is a mapped segment goes back by its descriptor again: zero copies. How a frame
//! carries descriptors is in `process/wire.rs`; how the codec hands them to this type, in
//! `oob.rs`.
//!
//! **Reuse.** A `Bytes` sent again (to many tasks, or a received one sent on) reuses its
//! segment: it is written into shared memory once. And the parent recycles its segments for
//! *new* data (`oob/pool.rs`): once nothing refers to one (no `Bytes`, no frame in flight, no
//! worker that said it keeps it), the next buffer of its size class is copied into its pages
//! instead of into fresh ones, which the kernel would have to allocate and zero (a copy into
//! new pages runs at about a fifth of the speed here, `benches/bigdata.rs`). Workers say with
//! each result whether they kept any of the task's segments, and later when they let go
//! (`process/wire.rs`: `ST_KEPT`, `RELEASED`). A worker's own segments (its results) are sealed
//! whole and never recycled: the parent never lets a worker write under its `&[u8]`.
//!
//! **Memory accounting.** Pages of a segment a worker reads count in its resident size, so a
//! worker reading a large shared buffer may pass `max_worker_memory` and be retired after the
//! task (the pages themselves are shared, not copied).

pub(crate) use crate::oob::{self, segment};
pub(crate) mod shared;

pub use shared::{shared_values_cached, Shared};

use segment::Segment;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// Buffers from this size on travel out of band, in a shared-memory segment: 256 KiB, measured
/// (`benches/bigdata.rs`, threshold scenario, on a loaded 2-core machine): round trips of
/// 255 KiB inline ran at 1.17 GB/s and of 256 KiB out of band at 2.0 GB/s in one run (0.91
/// and 0.58 in a noisier one); with the threshold lowered to 64 KiB, 64 KiB out of band ran
/// at 0.1–0.7 GB/s, below the copy into the frame. joblib uses 1 MB.
pub(crate) const OUT_OF_BAND_MIN: usize = 256 << 10;

/// An immutable, cheaply clonable byte buffer for task arguments and results: large ones move
/// between processes through shared memory, without being encoded or copied on arrival.
///
/// A plain `Vec<u8>` field is encoded by serde **element by element** (several times slower
/// than a memcpy: see the README's table); a `Bytes` field is one raw copy when it is small, and
/// from 256 KiB on it travels out of band: written once into a sealed shared-memory segment
/// (`memfd`), its descriptor passed beside the task's frame, mapped read-only by the worker. A
/// task that returns (a clone of) the `Bytes` it was given sends it back by the same
/// descriptor: no copy at all. The 1 GiB limit of a frame does not apply to out-of-band
/// buffers.
///
/// Nothing is ever created in the file system or in /dev/shm: the memory belongs to the
/// descriptors and mappings that refer to it, and the kernel frees it with the last of them,
/// whichever process dies.
///
/// **Recycled segments.** The executor's process keeps the segment of a `Bytes` it sent once
/// nothing refers to it any more (no clone, no task in flight, no worker that kept it), and
/// copies the next buffer of the same size class into it: a fresh buffer is one copy into pages
/// that already exist, not into new ones the kernel must allocate and zero (about five times
/// slower here). Free segments are kept at most 2 s and 1 GiB in all, then freed by a thread
/// that lives only while something is kept. A task may keep a `Bytes` it was given (in a cache,
/// a static): its worker says so, and that segment is not written again until the worker drops
/// it or exits.
///
/// On [`Backend::Threads`](crate::Backend) a `Bytes` is moved like any value. Outside
/// workpool's own codec (serde_json, say) it serializes as plain bytes.
///
/// # Images and arrays
///
/// Put the raw pixels or the numbers in a `Bytes` and the shape beside it:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use workpool::Bytes;
///
/// #[derive(Serialize, Deserialize)]
/// struct Image {
///     width: u32,
///     height: u32,
///     rgb: Bytes, // width * height * 3 bytes
/// }
///
/// let image = Image { width: 2, height: 1, rgb: Bytes::from(vec![255, 0, 0, 0, 0, 255]) };
/// assert_eq!(&image.rgb[..3], &[255, 0, 0]);
///
/// // An array of f32: laid out raw, viewed again without a copy.
/// let samples = Bytes::from_pod(&[0.5f32, 1.5, -2.0]);
/// assert_eq!(samples.len(), 12);
/// assert_eq!(samples.as_pod::<f32>(), Some(&[0.5f32, 1.5, -2.0][..]));
/// ```
#[derive(Clone)]
pub struct Bytes(Repr);

#[derive(Clone)]
enum Repr {
    /// Bytes of this process's heap; the segment made the first time they went out of band
    /// (a `Bytes` sent to many tasks is written into shared memory once).
    Heap(Arc<Heap>),
    /// The first `usize` bytes of a segment received from another process (or made here),
    /// mapped read-only (a recyclable segment is a size class, larger than its contents).
    Mapped(Arc<Segment>, usize),
}

struct Heap {
    data: Vec<u8>,
    segment: OnceLock<Arc<Segment>>,
}

impl Bytes {
    /// An empty buffer.
    ///
    /// # Examples
    /// ```
    /// assert!(workpool::Bytes::new().is_empty());
    /// ```
    pub fn new() -> Bytes {
        Bytes::from(Vec::new())
    }

    /// The bytes as a `Vec<u8>`: without a copy when this is the only handle to bytes of this
    /// process's heap, with one otherwise (a received buffer lives in shared memory).
    ///
    /// # Examples
    /// ```
    /// let bytes = workpool::Bytes::from(vec![1, 2, 3]);
    /// assert_eq!(bytes.into_vec(), vec![1, 2, 3]);
    /// ```
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Heap(heap) => match Arc::try_unwrap(heap) {
                Ok(heap) => heap.data,
                Err(shared) => shared.data.clone(),
            },
            Repr::Mapped(segment, len) => segment.as_slice()[..len].to_vec(),
        }
    }

    /// A buffer holding `values` laid out raw (native byte order): an image of `u16` pixels,
    /// an array of `f32` or `f64`. One copy.
    ///
    /// # Examples
    /// ```
    /// let bytes = workpool::Bytes::from_pod(&[1u16, 2, 3]);
    /// assert_eq!(bytes.len(), 6);
    /// ```
    pub fn from_pod<T: bytemuck::Pod>(values: &[T]) -> Bytes {
        Bytes::from(bytemuck::cast_slice::<T, u8>(values))
    }

    /// The bytes viewed as a slice of `T`, without a copy; `None` when the length is not a
    /// multiple of `T`'s size or the start is not aligned for `T`. Buffers received from another
    /// process are page-aligned, so the view always works for them when the length fits; for
    /// a small buffer made in this process, [`to_pod_vec`](Bytes::to_pod_vec) copies instead.
    ///
    /// # Examples
    /// ```
    /// let bytes = workpool::Bytes::from_pod(&[1.0f64, 2.0]);
    /// let values: Vec<f64> = bytes.as_pod::<f64>().map(<[f64]>::to_vec).unwrap_or_else(|| bytes.to_pod_vec());
    /// assert_eq!(values, vec![1.0, 2.0]);
    /// ```
    pub fn as_pod<T: bytemuck::Pod>(&self) -> Option<&[T]> {
        bytemuck::try_cast_slice(self).ok()
    }

    /// The bytes copied into a `Vec<T>`, whatever their alignment (a partial last element is
    /// left out).
    ///
    /// # Examples
    /// ```
    /// let bytes = workpool::Bytes::from_pod(&[7u32, 8]);
    /// assert_eq!(bytes.to_pod_vec::<u32>(), vec![7, 8]);
    /// ```
    pub fn to_pod_vec<T: bytemuck::Pod>(&self) -> Vec<T> {
        let size = std::mem::size_of::<T>().max(1);
        let count = self.len() / size;
        let mut out = vec![T::zeroed(); count];
        bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(&self[..count * size]);
        out
    }

    /// The segment this buffer travels in when it goes out of band, made on first use.
    fn segment(&self) -> std::io::Result<Arc<Segment>> {
        match &self.0 {
            Repr::Mapped(segment, _) => Ok(segment.clone()),
            Repr::Heap(heap) => {
                if let Some(segment) = heap.segment.get() {
                    return Ok(segment.clone());
                }
                let made = Segment::recyclable(&heap.data)?;
                Ok(heap.segment.get_or_init(|| made).clone())
            }
        }
    }
}

impl Default for Bytes {
    fn default() -> Self {
        Bytes::new()
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(data: Vec<u8>) -> Self {
        Bytes(Repr::Heap(Arc::new(Heap { data, segment: OnceLock::new() })))
    }
}

impl From<&[u8]> for Bytes {
    fn from(data: &[u8]) -> Self {
        Bytes::from(data.to_vec())
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Heap(heap) => &heap.data,
            Repr::Mapped(segment, len) => &segment.as_slice()[..*len],
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if matches!(self.0, Repr::Mapped(..)) { "shared" } else { "heap" };
        write!(f, "Bytes({} bytes, {kind})", self.len())
    }
}

// ===== on the wire =====
//
// In the process codec a `Bytes` is a pair: a tag, then
//   0: the bytes inline (`serialize_bytes`: a length and one raw copy), or
//   1: (u32 index of its segment among the frame's descriptors, u64 length).
// Anywhere else it is plain bytes.

const INLINE: u8 = 0;
const OUT_OF_BAND: u8 = 1;

/// The inline body: one `serialize_bytes` / `deserialize_byte_buf`.
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

struct RawBuf(Vec<u8>);

impl<'de> Deserialize<'de> for RawBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor).map(RawBuf)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // Self-describing formats that write bytes as a list of numbers (serde_json).
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element()? {
            out.push(byte);
        }
        Ok(out)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !oob::is_process_codec() {
            return serializer.serialize_bytes(self);
        }
        let mut pair = serializer.serialize_tuple(2)?;
        if self.len() >= OUT_OF_BAND_MIN && oob::can_register() {
            let segment = self.segment().map_err(|e| {
                serde::ser::Error::custom(format!(
                    "a {}-byte Bytes could not be put in shared memory ({e}); the system is out of \
                     memory or descriptors (RLIMIT_NOFILE, a memory cgroup): free some, or send less at once",
                    self.len()
                ))
            })?;
            if let Some(index) = oob::register(&segment) {
                pair.serialize_element(&OUT_OF_BAND)?;
                pair.serialize_element(&(index, self.len() as u64))?;
                return pair.end();
            }
        }
        pair.serialize_element(&INLINE)?;
        pair.serialize_element(&Raw(self))?;
        pair.end()
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !oob::is_process_codec() {
            return deserializer.deserialize_byte_buf(BytesVisitor).map(Bytes::from);
        }
        struct Pair;
        impl<'de> Visitor<'de> for Pair {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a workpool Bytes (tag and body)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                let missing = || de::Error::custom("a Bytes cut short");
                match seq.next_element::<u8>()?.ok_or_else(missing)? {
                    INLINE => Ok(Bytes::from(seq.next_element::<RawBuf>()?.ok_or_else(missing)?.0)),
                    OUT_OF_BAND => {
                        let (index, len): (u32, u64) = seq.next_element()?.ok_or_else(missing)?;
                        let segment = oob::take(index).map_err(de::Error::custom)?;
                        if (segment.len() as u64) < len {
                            return Err(de::Error::custom(format!(
                                "out-of-band buffer {index} holds {} bytes, fewer than the {len} announced",
                                segment.len()
                            )));
                        }
                        Ok(Bytes(Repr::Mapped(segment, len as usize)))
                    }
                    tag => Err(de::Error::custom(format!("unknown Bytes tag {tag}"))),
                }
            }
        }
        deserializer.deserialize_tuple(2, Pair)
    }
}

/// Encoded values and the segments that came with them: what a worker sent back for a task.
#[derive(Default)]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) segments: Vec<oob::Received>,
}

impl Encoded {
    /// `bytes` with the descriptors a worker sent beside them, mapped (a failure is kept, for
    /// the decode of the buffer that names that descriptor to report). Each must be sealed
    /// whole, or be one of this process's own recyclable segments coming back.
    pub(crate) fn new(bytes: Vec<u8>, fds: Vec<std::os::fd::OwnedFd>) -> Encoded {
        let segments = fds.into_iter().map(|fd| Segment::receive(fd).map_err(|e| e.to_string())).collect();
        Encoded { bytes, segments }
    }

    /// What came with a task from the parent, in a worker: recyclable segments too.
    pub(crate) fn from_parent(fds: Vec<std::os::fd::OwnedFd>) -> Encoded {
        let segments = fds.into_iter().map(|fd| Segment::receive_from_parent(fd).map_err(|e| e.to_string())).collect();
        Encoded { bytes: Vec::new(), segments }
    }

    /// Whether anything outside this value (a task that kept a `Bytes`, a cached shared
    /// value) still refers to one of its segments, besides the `outgoing` ones, which are sent
    /// on and dropped.
    pub(crate) fn kept(&self, outgoing: &[Arc<Segment>]) -> Vec<Arc<Segment>> {
        self.segments
            .iter()
            .flatten()
            .filter(|s| {
                let sent = outgoing.iter().filter(|o| Arc::ptr_eq(o, s)).count();
                Arc::strong_count(s) > 1 + sent
            })
            .cloned()
            .collect()
    }

    /// Runs `decode` on the bytes, with the segments available to the `Bytes` in them.
    pub(crate) fn decode<T>(&self, decode: impl FnOnce(&[u8]) -> T) -> T {
        if self.segments.is_empty() {
            return decode(&self.bytes);
        }
        oob::decoding(self.segments.clone(), || decode(&self.bytes))
    }
}

impl Deref for Encoded {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests;
