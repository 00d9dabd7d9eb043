//! The Plaid connector. See the crate documentation for the module map.

pub mod client;
pub mod connect;
pub mod items;
pub mod link;
pub mod source;
pub mod sync;
pub mod types;
pub mod webhook;

pub use client::{PlaidApiError, PlaidClient};
