//! The ingest server at the city's operations centre (IOC).
//!
//! It takes in signed violation events from edge agents, stores each once,
//! resolves the vehicle's owner, prices the fine, and serves the review
//! console and the citizen app. This crate is being built issue by issue;
//! today it holds the configuration and the HTTP surface every later part
//! hangs from.

pub mod config;
pub mod web;
