//! The v2 record batch header as the log sees it. The code lives in the
//! protocol crate (`protocol::record_batch::header`) so that the broker, the
//! benchmark client and the log parse batches one way; this module keeps the
//! engine's paths short.

pub use protocol::record_batch::header::*;
