//! Federation. For now only the server's signing key, which every local PDU is signed with
//! from day one (DESIGN.md decision 2); the server-server API comes with its own issue.

pub mod signing_key;
