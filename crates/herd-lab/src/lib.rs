//! Herd's lab: the tools that run Herd's real programs to show or measure them — `herd demo`
//! (the worked example with a real center and real agents) and `herd sim` (the load
//! generator) — the process harness they share with the end-to-end tests, and the TUF mirror
//! that turns malicious (`mirror`), shared by the demo and the agent's tests.
//!
//! Nothing here is part of the product a terminal or a center runs; the `herd` binary only
//! dispatches to it.

pub mod demo;
pub mod harness;
pub mod mirror;
pub mod programs;
pub mod sim;
pub mod world;
