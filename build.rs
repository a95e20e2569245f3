//! Installs the browser player of `podgate review` (the npm package `asciinema-player`,
//! pinned with its integrity hash in `web/package-lock.json`) and embeds its bundle in the
//! binary, so that `podgate review` works from the binary alone, offline.
//!
//! The package is not copied into the repository: `npm ci` installs it into `OUT_DIR`
//! (build scripts write nowhere else), from the registry or npm's cache, and checks it
//! against the lock file's sha512. `PODGATE_PLAYER_DIR` names a directory that already
//! holds `asciinema-player.min.js` and `asciinema-player.css` instead (an offline build,
//! a distribution's own package).
//!
//! Without npm (or with `PODGATE_PLAYER_DIR=none`) the build still succeeds, with a
//! warning: the review page then shows transcripts as text and says the player is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

const BUNDLE: &str = "node_modules/asciinema-player/dist/bundle";
const FILES: [&str; 2] = ["asciinema-player.min.js", "asciinema-player.css"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=web/package.json");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-env-changed=PODGATE_PLAYER_DIR");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let found = match std::env::var("PODGATE_PLAYER_DIR") {
        Ok(dir) if dir == "none" => Err("PODGATE_PLAYER_DIR=none".to_owned()),
        Ok(dir) => Ok(PathBuf::from(dir)),
        Err(_) => npm_ci(&out),
    };
    let code = match found.and_then(|dir| check(&dir)) {
        Ok(dir) => {
            // Build again if the embedded files change or go (an emptied OUT_DIR, a
            // different PODGATE_PLAYER_DIR).
            for f in FILES {
                println!("cargo:rerun-if-changed={}", dir.join(f).display());
            }
            let version = version(&dir).unwrap_or_else(|| "unknown".to_owned());
            format!(
                "/// The asciinema-player bundle, installed by the build.\n\
                 pub const PLAYER: Option<Player> = Some(Player {{\n    \
                 version: {version:?},\n    \
                 js: include_bytes!({js:?}),\n    \
                 css: include_bytes!({css:?}),\n}});\n",
                js = dir.join(FILES[0]),
                css = dir.join(FILES[1]),
            )
        }
        Err(why) => {
            println!(
                "cargo:warning=asciinema-player is not embedded ({why}); `podgate review` \
                 will show transcripts as text. Install npm, or set PODGATE_PLAYER_DIR."
            );
            "/// The asciinema-player bundle: not installed by this build.\n\
             pub const PLAYER: Option<Player> = None;\n"
                .to_owned()
        }
    };
    if let Err(e) = std::fs::write(out.join("player.rs"), code) {
        panic!("writing {}: {e}", out.join("player.rs").display());
    }
}

/// `npm ci` of `web/` in `OUT_DIR/web`; the bundle's directory.
fn npm_ci(out: &Path) -> Result<PathBuf, String> {
    let web = out.join("web");
    let bundle = web.join(BUNDLE);
    let lock = Path::new("web/package-lock.json");
    let installed_lock = web.join("package-lock.json");
    // Already installed from this very lock file: nothing to do (`cargo clippy` and
    // `cargo test` share OUT_DIR with nothing, but rebuilds of one profile do).
    let wanted = std::fs::read(lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    if bundle.join(FILES[0]).is_file() && std::fs::read(&installed_lock).ok() == Some(wanted) {
        return Ok(bundle);
    }
    std::fs::create_dir_all(&web).map_err(|e| format!("{}: {e}", web.display()))?;
    for name in ["package.json", "package-lock.json"] {
        std::fs::copy(Path::new("web").join(name), web.join(name))
            .map_err(|e| format!("web/{name}: {e}"))?;
    }
    let output = Command::new("npm")
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&web)
        .output()
        .map_err(|e| format!("running npm: {e}"))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "npm ci failed: {}",
            err.lines().last().unwrap_or("no output")
        ));
    }
    Ok(bundle)
}

fn check(dir: &Path) -> Result<PathBuf, String> {
    for f in FILES {
        if !dir.join(f).is_file() {
            return Err(format!("{} has no {f}", dir.display()));
        }
    }
    std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// The package's version, from the package.json two levels up from the bundle.
fn version(bundle: &Path) -> Option<String> {
    let text = std::fs::read_to_string(bundle.join("../../package.json")).ok()?;
    let at = text.find("\"version\"")?;
    let rest = text.get(at + "\"version\"".len()..)?;
    let start = rest.find('"')? + 1;
    let len = rest.get(start..)?.find('"')?;
    rest.get(start..start + len).map(str::to_owned)
}
