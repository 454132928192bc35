//! Types the process codec cannot carry, through a real executor: the task fails alone with a
//! codec error that names the type and the construct and says what to write instead, the
//! worker lives on, and the same task runs on threads, which do not encode.

use serde::{Deserialize, Serialize};
use workpool::{Backend, Executor, Parallel};

workpool::test_support!();

/// Either a number or a text, told apart by looking at the data: `deserialize_any`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
enum Loose {
    Number(u64),
    Text(String),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Extra {
    tag: String,
}

/// Fields merged into the parent's map: written without a length.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Flat {
    id: u64,
    #[serde(flatten)]
    extra: Extra,
}

/// An untagged argument: it encodes in the parent, and fails to decode in the worker.
#[workpool::task]
fn describe(value: Loose) -> String {
    format!("{value:?}")
}

/// An untagged result: it encodes in the worker, and fails to decode in the parent.
#[workpool::task]
fn loosen(n: u64) -> Loose {
    Loose::Number(n)
}

/// A flattened argument: it fails to encode, in the parent, before any worker is involved.
#[workpool::task]
fn id_of(flat: Flat) -> u64 {
    flat.id
}

/// A JSON value: `deserialize_any` again.
#[workpool::task]
fn keys(json: serde_json::Value) -> usize {
    json.as_object().map_or(0, |o| o.len())
}

#[workpool::task]
fn square(n: u64) -> u64 {
    n * n
}

fn assert_advises(err: &workpool::TaskError, stage: &str, at: &str, construct: &str, instead: &str) {
    assert!(err.is_codec(), "{err:?}");
    let text = err.to_string();
    let workpool::ErrorKind::Codec { stage: got, .. } = err.kind() else { unreachable!() };
    assert_eq!(*got, stage, "{text}");
    for word in [at, construct, instead, "Backend::Threads"] {
        assert!(text.contains(word), "{word:?} missing from: {text}");
    }
}

#[test]
fn each_construct_fails_its_task_alone_with_advice() {
    let ex = Executor::builder().workers(1).build().unwrap();
    // The message names the type, where in it the failure came up, the construct and what to
    // write instead. (Decoding reads a struct's fields by position: `[0]` is the first.)
    let err = ex.submit(Describe { value: Loose::Text("x".into()) }).join().unwrap_err();
    let at = "`codec_errors::Describe` (at `[0]`";
    assert_advises(&err, "decoding the argument in the worker", at, "#[serde(untagged)]", "externally tagged");

    let err = ex.submit(Loosen { n: 3 }).join().unwrap_err();
    let at = "`codec_errors::Loose` cannot be decoded";
    assert_advises(&err, "decoding the result", at, "#[serde(untagged)]", "externally tagged");

    let err = ex.submit(IdOf { flat: Flat { id: 1, extra: Extra { tag: "t".into() } } }).join().unwrap_err();
    let at = "`codec_errors::IdOf` (at `flat`)";
    assert_advises(&err, "encoding the argument", at, "#[serde(flatten)]", "Spell the flattened fields out");

    let err = ex.submit(Keys { json: serde_json::json!({"a": 1}) }).join().unwrap_err();
    let at = "`codec_errors::Keys` (at `[0]`";
    assert_advises(&err, "decoding the argument in the worker", at, "serde_json::Value", "JSON as a String");

    // The worker lived through all of it.
    assert_eq!(ex.submit(Square { n: 9 }).join().unwrap(), 81);
    assert_eq!(ex.workers().iter().map(|w| w.deaths).sum::<u64>(), 0);
}

#[test]
fn the_same_tasks_run_on_threads() {
    let threads = Parallel::new().backend(Backend::Threads);
    let described = threads.run([Describe { value: Loose::Number(1) }]).unwrap();
    assert_eq!(described, ["Number(1)"]);
    assert_eq!(threads.run([Loosen { n: 2 }]).unwrap(), [Loose::Number(2)]);
    assert_eq!(threads.run([IdOf { flat: Flat { id: 5, extra: Extra { tag: "t".into() } } }]).unwrap(), [5]);
    assert_eq!(threads.run([Keys { json: serde_json::json!({"a": 1, "b": 2}) }]).unwrap(), [2]);
}
