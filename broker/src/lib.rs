//! # The `stele` broker
//!
//! A thread-per-core Kafka-compatible server: one glommio executor per core,
//! each accepting connections on the same port (SO_REUSEPORT) and owning the
//! partitions placed on it. Requests touching another shard's partitions are
//! forwarded over cross-executor channels and the answers gathered.
//!
//! # Layout
//! - [`config`]: the broker's configuration file and its validation.
//! - [`topic_config`]: Kafka's topic-level keys (`segment.bytes`, ...) mapped
//!   onto engine settings; the one place those spellings live.
//! - [`metadata`]: cluster metadata (topics, partitions, placement) and its
//!   durable metadata log.
//! - [`producer_state`]: idempotent and transactional producers' state per
//!   partition: sequences, epochs, ongoing transactions, snapshots.
//! - [`aborted_index`]: a partition's durable aborted-transaction index.
//! - [`server`]: startup checks, the shards' lifecycle, graceful shutdown.
//! - [`shard`]: one executor's state and `invoke_on` between shards.
//! - [`controller`]: the metadata writer on shard 0 and snapshot publishing.
//! - [`connection`]: one client connection: frames in, answers out in order.
//! - [`handlers`]: one module per Kafka API.
//! - [`group`]: consumer group coordinators and their durable offsets.
//! - [`txn`]: transaction coordinators (transactional ids, their durable
//!   state, markers, timeouts).
//! - [`internal_log`]: a coordinator's durable, compacted state log on the
//!   engine (consumer group offsets and metadata, transaction state).
//! - [`share`]: share-partitions (KIP-932): per-record delivery state of
//!   share groups, acquisition locks, and its durable share-state log in
//!   each partition's directory.
//! - `flatbuf`: the macros that declare hand-written flatbuffers tables.
//! - [`partition`]: a partition's log plus Kafka's produce rules, transaction
//!   markers and the last stable offset.
#![deny(unsafe_code)]

pub mod aborted_index;
pub mod cli;
pub mod config;
pub mod connection;
pub mod controller;
mod event;
mod flatbuf;
pub mod group;
pub mod handlers;
pub mod internal_log;
pub mod metadata;
pub mod partition;
pub mod producer_state;
pub mod server;
pub mod shard;
pub mod share;
pub mod topic_config;
pub mod txn;
