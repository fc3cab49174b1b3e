//! The comparison service: a gRPC API (`recipe.v1.ComparisonService`) that stores recipes and
//! makes and works out how each make differs from its recipe.
//!
//! `config` reads settings, `startup` builds and runs the server, `api` holds the handlers,
//! `convert` maps wire <-> domain types, `errors` maps failures to gRPC statuses and `metrics`
//! counts and times what the service does (served on the admin port, see docs/metrics.md).

pub mod api;
pub mod config;
pub mod convert;
pub mod errors;
pub mod metrics;
pub mod startup;
