//! The edge agent: runs on the box at the intersection.
//!
//! Real-time processing (capture → detect → track → rules) is kept apart
//! from post-processing (plate reading on the violator, evidence, signing)
//! and from communication (the durable outbox and MQTT delivery), so a slow
//! plate read or a dead network never stalls a camera.

pub mod analysis;
pub mod capture;
pub mod config;
pub mod delivery;
pub mod detect;
pub mod evidence;
pub mod geometry;
pub mod health;
pub mod identity;
pub mod live;
pub mod models;
pub mod outbox;
pub mod parked_store;
pub mod recover;
pub mod replay;
pub mod report;
pub mod rules;
pub mod scene;
pub mod signal;
pub mod site;
pub mod track;
pub mod violator;
