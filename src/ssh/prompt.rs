//! The interactive `podgate>` prompt, for `ssh -t GATEWAY` with no command: a small line
//! editor over the raw terminal (printable ASCII, backspace, Ctrl-C, Ctrl-D, Ctrl-U; arrow
//! keys and other escape sequences are ignored), and each line parsed and checked on its
//! own exactly like an `ssh GATEWAY LINE` request.

use super::io::{ChannelIo, Input};
use super::session::{self, Ctx};
use crate::request::{self, PromptLine};

const PROMPT: &str = "podgate> ";
/// Longest line accepted at the prompt (the exec request limit is 16 KiB; this is typing).
const MAX_LINE: usize = 4096;

/// What the line editor made of the input so far.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    Char(u8),
    Enter,
    Backspace,
    Interrupt,
    EndOfInput,
    KillLine,
    Ignored,
}

/// Splits raw terminal bytes into keys, swallowing escape sequences (`ESC [ ... final`).
#[derive(Default)]
struct Keys {
    escape: u8,
}

impl Keys {
    fn key(&mut self, b: u8) -> Key {
        match self.escape {
            1 => {
                self.escape = if b == b'[' || b == b'O' { 2 } else { 0 };
                return Key::Ignored;
            }
            2 => {
                if (0x40..=0x7e).contains(&b) {
                    self.escape = 0;
                }
                return Key::Ignored;
            }
            _ => {}
        }
        match b {
            0x1b => {
                self.escape = 1;
                Key::Ignored
            }
            b'\r' | b'\n' => Key::Enter,
            0x7f | 0x08 => Key::Backspace,
            0x03 => Key::Interrupt,
            0x04 => Key::EndOfInput,
            0x15 => Key::KillLine,
            0x20..=0x7e => Key::Char(b),
            _ => Key::Ignored,
        }
    }
}

/// Run the prompt until `exit`, Ctrl-D on an empty line, or the channel closes.
/// Returns the status of the last command (0 after `exit`).
pub async fn run(ctx: &Ctx, io: &mut ChannelIo) -> u32 {
    let banner = format!(
        "podgate: signed in as {}. Type \"help\" for commands, \"exit\" to leave.\n",
        ctx.identity.key_id
    );
    if io.text(&banner).await.is_err() {
        return 0;
    }
    let mut last = 0;
    let mut keys = Keys::default();
    let mut line: Vec<u8> = Vec::new();
    let mut pending: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
    if io.text(PROMPT).await.is_err() {
        return last;
    }
    let lifetime = io.lifetime.clone();
    loop {
        let b = match pending.pop_front() {
            Some(b) => b,
            None => match tokio::select! {
                input = io.input.recv() => input,
                // The channel must end (expiry, idle, revocation); the caller says why.
                _ = lifetime.stopped() => return last,
            } {
                Some(Input::Data(bytes, _permit)) => {
                    pending.extend(bytes.iter().copied());
                    continue;
                }
                Some(Input::Resize { cols, rows }) => {
                    if let Some(p) = io.pty.as_mut() {
                        p.cols = cols;
                        p.rows = rows;
                    }
                    continue;
                }
                Some(Input::Eof) => {
                    io.eof = true;
                    return last;
                }
                Some(Input::Close) | None => {
                    io.closed = true;
                    return last;
                }
            },
        };
        let echo: Option<String> = match keys.key(b) {
            Key::Char(c) if line.len() < MAX_LINE => {
                line.push(c);
                Some(char::from(c).to_string())
            }
            Key::Char(_) | Key::Ignored => None,
            Key::Backspace => line.pop().map(|_| "\x08 \x08".to_owned()),
            Key::KillLine => {
                let n = line.len();
                line.clear();
                Some("\x08 \x08".repeat(n))
            }
            Key::Interrupt => {
                line.clear();
                Some(format!("^C\n{PROMPT}"))
            }
            Key::EndOfInput if line.is_empty() => {
                let _ = io.text("\n").await;
                return last;
            }
            Key::EndOfInput => None,
            Key::Enter => {
                if io.text("\n").await.is_err() {
                    return last;
                }
                let typed = std::mem::take(&mut line);
                match request::parse_prompt_line(&typed) {
                    Ok(PromptLine::Empty) => {}
                    Ok(PromptLine::Exit) => return 0,
                    Ok(PromptLine::Command(cmd)) => {
                        // Keys already typed ahead stay for the prompt; the command gets
                        // what arrives while it runs.
                        last = session::execute(ctx, cmd, io).await;
                        if io.closed {
                            return last;
                        }
                    }
                    Err(e) => {
                        let _ = io.message(&e.to_string()).await;
                        last = session::EXIT_USAGE;
                    }
                }
                Some(PROMPT.to_owned())
            }
        };
        if let Some(text) = echo
            && io.text(&text).await.is_err()
        {
            return last;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_decoded_and_escape_sequences_swallowed() {
        let mut k = Keys::default();
        let input = b"ls\x1b[A\x7f\r\x03\x04\x15";
        let got: Vec<Key> = input.iter().map(|b| k.key(*b)).collect();
        assert_eq!(
            got,
            [
                Key::Char(b'l'),
                Key::Char(b's'),
                Key::Ignored,
                Key::Ignored,
                Key::Ignored,
                Key::Backspace,
                Key::Enter,
                Key::Interrupt,
                Key::EndOfInput,
                Key::KillLine,
            ]
        );
        let mut k = Keys::default();
        assert_eq!(k.key(0xc3), Key::Ignored);
        assert_eq!(k.key(b'\t'), Key::Ignored);
    }
}
