//! The sender: takes jobs (references to recipe and make files) from the queue the watcher
//! fills, reads and validates each file, and submits it to the comparison service over gRPC —
//! nothing lost (a message is deleted only once the service accepted it, and dead-lettered only
//! with a reason for failures that cannot pass), nothing counted twice (every submission carries
//! an idempotency key naming the file version read).
//!
//! `config` reads settings, `startup` builds the sender and runs the receive loop, `worker`
//! handles one delivery, `lease` keeps the messages of jobs in flight hidden, `deletes` batches
//! the deletes of finished jobs, `document` parses files, `rpc` talks to the comparison service,
//! `outcome` classifies its errors, `backoff` and `breaker` decide when to try again, `stats`
//! counts what happened and `dead_letters` prints the dead letters for operators.
//! `docs/sender.md` describes the behaviour.

pub mod backoff;
pub mod breaker;
pub mod config;
pub mod dead_letters;
pub mod deletes;
pub mod document;
pub mod lease;
pub mod outcome;
pub mod rpc;
pub mod startup;
pub mod stats;
pub mod worker;
