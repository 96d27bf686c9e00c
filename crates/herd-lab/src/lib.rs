//! Herd's lab: the tools that run Herd's real programs to show or measure them — `herd demo`
//! (the worked example with a real center and real agents) and `herd sim` (the load
//! generator) — and the process harness they share with the end-to-end tests.
//!
//! Nothing here is part of the product a terminal or a center runs; the `herd` binary only
//! dispatches to it.

pub mod demo;
pub mod harness;
pub mod sim;
pub mod world;
