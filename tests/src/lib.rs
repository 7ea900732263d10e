//! Tests that look across crates (the air gap in the dependency graph) live in `tests/`;
//! this library is empty on purpose.
