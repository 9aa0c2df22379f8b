//! Placeholder; being built.
