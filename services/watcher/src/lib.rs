//! The watcher: turns new files in the bucket into jobs on the queue.
//!
//! - [`config`]: command line and environment;
//! - [`poll`]: detection by listing, with the persisted [`seen_ledger`] so that restarts and a
//!   second replica never lose or repeat a file, and [`seen_cache`] to keep re-listing cheap;
//! - [`events`]: detection from S3 event notifications delivered to an SQS queue;
//! - [`publish`]: jobs onto the queue, each starting the trace of its file;
//! - [`setup`]: creates the bucket, queues, ledger and notifications a configuration needs;
//! - [`startup`]: wires it together and runs until shutdown.

pub mod config;
pub mod events;
pub mod poll;
pub mod publish;
pub mod seen_cache;
pub mod setup;
pub mod startup;
pub mod stats;
