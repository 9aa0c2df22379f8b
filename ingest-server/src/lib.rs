//! The ingest server at the city's operations centre (IOC).
//!
//! It takes in signed violation events from edge agents (MQTT through an
//! embedded or external broker, or HTTPS), verifies them, stores each once
//! with its evidence (group commit, then the ack), quarantines what fails,
//! prices the fine from the dated schedule and resolves the vehicle's owner.
//! Later issues add the review console, notices, the citizen app and
//! payments on the same state.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod accounts;
pub mod api_tokens;
pub mod app;
pub mod audit;
pub mod broker;
pub mod cameras;
pub mod cases;
pub mod citizen;
pub mod clips;
pub mod config;
pub mod console;
pub mod db;
pub mod devices;
pub mod evidence;
pub mod fines;
pub mod headers;
pub mod heartbeats;
pub mod ingest;
pub mod integrity;
pub mod labels;
pub mod metrics;
pub mod mqtt;
pub mod notices;
pub mod outbound;
pub mod package;
pub mod payments;
pub mod quarantine;
pub mod registry;
pub mod retention;
pub mod review;
pub mod server_key;
pub mod sso;
pub mod web;
pub mod workflow;
