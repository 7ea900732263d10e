//! How much of an operator-supplied file the tool reads.

/// The most this tool reads of a KEK file, challenge, manifest, public key or `.byok`: each is
/// a few KiB, so anything larger is the wrong file.
pub(crate) const MAX_INPUT_BYTES: u64 = 1024 * 1024;
