//! `podgate review` (issue 10): a local, read-only web page for incident review.
//!
//! Work in progress: the pages (`html`) and the transcript view (`cast_view`) exist and
//! are tested, and so is the request handling (`serve::Review`); the HTTP listener and
//! the `podgate review` command, the asciinema-player assets and the browser test are not
//! written yet.

pub mod cast_view;
pub mod html;
pub mod serve;
