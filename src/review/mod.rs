//! `podgate review` (issue 10): a local, read-only web page for incident review.
//!
//! Work in progress: the pages (`html`) and the transcript view (`cast_view`) exist and
//! are tested, and so are the request handling (`serve::Review`) and the listener
//! (`http`) behind `podgate review --recordings DIR`. Not written yet: the
//! asciinema-player assets (the page shows the transcript as text meanwhile), `--store`,
//! and the browser test.

pub mod cast_view;
pub mod html;
pub mod http;
pub mod serve;
