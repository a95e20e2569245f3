//! The static files of the review page: the asciinema-player bundle that the build
//! installed from npm (`build.rs`; absent when the build had no npm) and our own script.
//!
//! Guarantees: only these names are served, from memory; nothing is read from disk at
//! run time, so a path cannot reach outside them.

/// The player's bundle and the version it came from.
pub struct Player {
    pub version: &'static str,
    pub js: &'static [u8],
    pub css: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/player.rs"));

/// The session page's script: starts the player, seeks on markers, searches the transcript.
const REVIEW_JS: &str = include_str!("review.js");

/// The tab's icon (and no request for /favicon.ico that would answer 404).
const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#247\"/><path d=\"M4 5l3 3-3 3M8 11h4\" \
stroke=\"#fff\" stroke-width=\"1.6\" fill=\"none\"/></svg>";

/// Whether this binary can show the player.
pub fn have_player() -> bool {
    PLAYER.is_some()
}

/// The asset at `/assets/NAME`: its content type and bytes.
pub fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
    const JS: &str = "text/javascript; charset=utf-8";
    match (name, &PLAYER) {
        ("review.js", _) => Some((JS, REVIEW_JS.as_bytes())),
        ("favicon.svg", _) => Some(("image/svg+xml", FAVICON.as_bytes())),
        ("asciinema-player.min.js", Some(p)) => Some((JS, p.js)),
        ("asciinema-player.css", Some(p)) => Some(("text/css; charset=utf-8", p.css)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_names_are_served() {
        assert!(get("review.js").is_some());
        for name in [
            "",
            "../Cargo.toml",
            "review.js/",
            "asciinema-player.min.js.map",
        ] {
            assert!(get(name).is_none(), "{name}");
        }
        assert_eq!(get("asciinema-player.min.js").is_some(), have_player());
        assert_eq!(get("asciinema-player.css").is_some(), have_player());
        if let Some(p) = &PLAYER {
            assert!(!p.js.is_empty() && !p.css.is_empty());
            assert!(p.version.starts_with('3'), "{}", p.version);
        }
    }
}
