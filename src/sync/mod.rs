//! Sync: what clients read. For now the event filters shared by `/messages` (and, later,
//! `/sync`).

pub mod filter;
