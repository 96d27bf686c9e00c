//! The site server (`herd serve --role site`): a center's relay for one office, region or carrier.

pub mod mirror;
