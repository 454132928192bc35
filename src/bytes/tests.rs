//! `Bytes` through the process codec and its out-of-band context, without processes: what is
//! written inline, what goes into segments, and what a decode does with what came back.

use super::*;
use crate::codec;

fn big(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Encodes `value` in an out-of-band context; the bytes and the segments.
fn encode<T: Serialize>(value: &T) -> (Vec<u8>, Vec<Arc<Segment>>) {
    let mut out = Vec::new();
    let (result, segments) = oob::encoding(true, || codec::encode_into(value, &mut out));
    result.unwrap();
    (out, segments)
}

/// What a receiver gets: the segments' descriptors, duplicated as if passed with SCM_RIGHTS.
fn receive(bytes: Vec<u8>, segments: &[Arc<Segment>]) -> Encoded {
    Encoded::new(bytes, segments.iter().map(|s| s.fd().try_clone_to_owned().unwrap()).collect())
}

#[test]
fn small_buffers_go_inline_as_one_raw_copy() {
    let small = Bytes::from(vec![7u8; 1000]);
    let (out, segments) = encode(&small);
    assert!(segments.is_empty());
    // Tag, varint length (3 bytes for 1000), the bytes: nothing per element.
    assert_eq!(out.len(), 1 + 3 + 1000);
    let back: Bytes = receive(out, &[]).decode(codec::decode_exact).unwrap();
    assert_eq!(back, small);
}

#[test]
fn large_buffers_travel_in_a_segment_and_arrive_mapped() {
    let data = big(OUT_OF_BAND_MIN + 17);
    let (out, segments) = encode(&(5u32, data.clone()));
    assert_eq!(segments.len(), 1);
    assert!(out.len() < 32, "only a tag, an index and a length are inline: {} bytes", out.len());
    let (n, back): (u32, Bytes) = receive(out, &segments).decode(codec::decode_exact).unwrap();
    assert_eq!((n, back.len()), (5, data.len()));
    assert_eq!(back, data);
    assert_eq!(format!("{back:?}"), format!("Bytes({} bytes, shared)", data.len()));
    // Sent on, a received buffer passes its own segment: no new one, no copy.
    let (_, again) = encode(&back);
    assert_eq!(inode(&again[0]), inode(&segments[0]));
}

fn inode(segment: &Segment) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::File::from(segment.fd().try_clone_to_owned().unwrap()).metadata().unwrap().ino()
}

#[test]
fn one_buffer_in_many_places_is_one_segment_made_once() {
    let data = big(2 * OUT_OF_BAND_MIN);
    let (_, first) = encode(&vec![data.clone(), data.clone()]);
    assert_eq!(first.len(), 1, "the same buffer twice in a frame is passed once");
    let (_, second) = encode(&data);
    assert!(Arc::ptr_eq(&first[0], &second[0]), "a buffer sent again reuses its segment");
}

#[test]
fn without_out_of_band_everything_is_inline() {
    // The switch a transport without descriptor passing (TCP) uses.
    let data = big(OUT_OF_BAND_MIN);
    let mut out = Vec::new();
    let (result, segments) = oob::encoding(false, || codec::encode_into(&data, &mut out));
    result.unwrap();
    assert!(segments.is_empty());
    assert!(out.len() > data.len());
    assert_eq!(codec::decode_exact::<Bytes>(&out).unwrap(), data);
}

#[test]
fn a_frame_carries_at_most_max_fds_segments_and_the_rest_go_inline() {
    let many: Vec<Bytes> = (0..oob::MAX_FDS + 2).map(|_| big(OUT_OF_BAND_MIN)).collect();
    let (out, segments) = encode(&many);
    assert_eq!(segments.len(), oob::MAX_FDS);
    let back: Vec<Bytes> = receive(out, &segments).decode(codec::decode_exact).unwrap();
    assert_eq!(back, many);
}

#[test]
fn a_missing_or_wrong_segment_is_a_decode_error() {
    let data = big(OUT_OF_BAND_MIN);
    let (out, segments) = encode(&data);
    let err = receive(out.clone(), &[]).decode(codec::decode_exact::<Bytes>).unwrap_err();
    assert!(err.contains("not among the descriptors"), "{err}");
    let other = Arc::new(Segment::create(&[1, 2, 3]).unwrap());
    let err = receive(out.clone(), &[other]).decode(codec::decode_exact::<Bytes>).unwrap_err();
    assert!(err.contains("holds 3 bytes, fewer than"), "{err}");
    assert_eq!(receive(out, &segments).decode(codec::decode_exact::<Bytes>).unwrap(), data);
}

#[test]
fn outside_the_process_codec_bytes_are_plain_bytes() {
    let data = Bytes::from(vec![1u8, 2, 255]);
    let json = serde_json::to_string(&data).unwrap();
    assert_eq!(json, "[1,2,255]");
    assert_eq!(serde_json::from_str::<Bytes>(&json).unwrap(), data);
}

#[test]
fn into_vec_copies_only_when_shared() {
    let vec = vec![9u8; 64];
    let ptr = vec.as_ptr();
    let back = Bytes::from(vec).into_vec();
    assert_eq!(back.as_ptr(), ptr, "the only handle: no copy");
    let bytes = Bytes::from(vec![9u8; 64]);
    let keep = bytes.clone();
    assert_eq!(bytes.into_vec(), keep.to_vec());
}

#[test]
fn pod_views() {
    let values = [1.5f32, -2.0, 3.25];
    let bytes = Bytes::from_pod(&values);
    assert_eq!(bytes.to_pod_vec::<f32>(), values);
    let data = Bytes::from_pod(&vec![0.25f64; OUT_OF_BAND_MIN / 8]);
    let (out, segments) = encode(&data);
    let back: Bytes = receive(out, &segments).decode(codec::decode_exact).unwrap();
    let view = back.as_pod::<f64>().expect("a mapped segment is page-aligned");
    assert!(view.iter().all(|&v| v == 0.25));
    assert_eq!(Bytes::from(vec![0u8; 3]).as_pod::<u16>(), None, "3 bytes are not a u16 slice");
}
