//! `podgate review` (issue 10): a local, read-only web page for incident review.
//!
//! Work in progress: the pages (`html`) and the transcript view (`cast_view`) exist and
//! are tested; the HTTP server, the asciinema-player assets and the browser test do not.

pub mod cast_view;
pub mod html;
