//! What the command prints: one line per event on standard output, for people or (with
//! `--json`) as one JSON object per line; progress bars on standard error.

use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// Where lines and progress bars go. Cheap to clone; clones share the bars.
#[derive(Clone)]
pub(crate) struct Output {
    json: bool,
    bars: MultiProgress,
}

impl Output {
    /// Human lines, or JSON lines when `json`. Progress bars show only for people, only
    /// when standard error is a terminal, and not when `--trace` prints chunks there.
    pub(crate) fn new(json: bool, trace: bool) -> Self {
        let target = if shows_bars(json || trace, std::io::stderr().is_terminal()) {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self { json, bars: MultiProgress::with_draw_target(target) }
    }

    /// Prints one event: `human` for people, or `{"event": name, …fields}` in JSON mode.
    /// Progress bars are lifted out of the way while the line is written.
    pub(crate) fn event(&self, name: &str, fields: Value, human: impl FnOnce() -> String) {
        let line = if self.json { json_line(name, fields) } else { human() };
        // A closed standard output (a reader that went away) is no reason to stop.
        self.bars.suspend(|| {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        });
    }

    /// A progress bar of `total` bytes labelled `label`; hidden when bars are.
    pub(crate) fn bytes_bar(&self, total: u64, label: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(total));
        let style =
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                .map_or_else(|_| ProgressStyle::default_bar(), |style| style.progress_chars("=> "));
        bar.set_style(style);
        bar.set_message(label.to_owned());
        bar
    }
}

/// Whether progress bars are drawn: for people (not with `--json`), on a terminal.
fn shows_bars(json: bool, stderr_is_terminal: bool) -> bool {
    !json && stderr_is_terminal
}

/// `{"event": name, …fields}` on one line, "event" first.
fn json_line(name: &str, fields: Value) -> String {
    let event = Value::from(name).to_string();
    match fields {
        Value::Object(fields) if !fields.is_empty() => {
            let rest = Value::Object(fields).to_string();
            format!("{{\"event\":{event},{}", &rest[1..])
        }
        _ => format!("{{\"event\":{event}}}"),
    }
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_start_with_the_event_and_escape_everything() {
        let line = json_line("message", serde_json::json!({ "text": "a \"quote\"\n", "size": 3 }));
        assert_eq!(line, r#"{"event":"message","size":3,"text":"a \"quote\"\n"}"#);
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["text"], "a \"quote\"\n");
        assert_eq!(json_line("ended", Value::Null), r#"{"event":"ended"}"#);
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }

    #[test]
    fn progress_bars_only_for_people_on_a_terminal() {
        assert!(shows_bars(false, true));
        assert!(!shows_bars(true, true), "never in JSON mode, even on a terminal");
        assert!(!shows_bars(false, false));
        assert!(!shows_bars(true, false));
    }
}
