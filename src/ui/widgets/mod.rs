//! Small drawing pieces the panels share.

pub mod badge;
pub mod big_number;
pub mod columns;
pub mod gauge;
pub mod spark;
pub mod stale;
pub mod text;
