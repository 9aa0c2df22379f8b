//! The wire protocol between edge agents and the ingest server (being built).
