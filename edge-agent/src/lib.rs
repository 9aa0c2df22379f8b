//! The edge agent: runs on the box at the intersection.
//!
//! Real-time processing (capture, detection, tracking, violation rules) is
//! kept apart from post-processing (plate reading on the violator, evidence,
//! signing) and from communication (the durable outbox and MQTT delivery).
//! This crate is being built issue by issue; today it holds the model check
//! every start begins with.

pub mod models;
