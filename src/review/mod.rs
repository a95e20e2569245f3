//! `podgate review` (issue 10): a local, read-only web page for incident review.
//!
//! `html` writes the pages from values, `cast_view` reads a transcript's markers and text,
//! `assets` holds the player (installed from npm by the build) and the page's script,
//! `serve::Review` answers requests from a recordings directory (or a snapshot of a
//! bucket, `store::fetch::snapshot`), and `http` is the loopback listener.

pub mod assets;
pub mod cast_view;
pub mod html;
pub mod http;
pub mod serve;
