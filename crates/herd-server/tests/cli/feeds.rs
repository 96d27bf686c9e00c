//! The example vendor feeds the README publishes.
