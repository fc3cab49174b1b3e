//! The comparison service: a gRPC API (`recipe.v1.ComparisonService`) that stores recipes and
//! makes and works out how each make differs from its recipe.
//!
//! `config` reads settings, `startup` builds and runs the server, `api` holds the handlers,
//! `convert` maps wire <-> domain types and `errors` maps failures to gRPC statuses.

pub mod api;
pub mod config;
pub mod convert;
pub mod errors;
pub mod startup;
