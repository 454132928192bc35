//! The compile errors of `#[workpool::task]` and `#[workpool::main]`, one file of `tests/ui/`
//! per kind of mistake, each checked against the `.stderr` beside it. Regenerate those after a
//! deliberate change of message (or of rustc's wording) with
//! `TRYBUILD=overwrite cargo test -p workpool-macros --test task_attr_ui`, and read them.

#[test]
fn mistakes_fail_to_compile_with_advice() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
