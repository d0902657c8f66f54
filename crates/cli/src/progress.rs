//! Pull and push progress as docker shows it: on a terminal a line per layer, redrawn in
//! place (`a3ed95caeb02: Downloading [=====>     ]  1.2MB/2.3MB`); otherwise one plain
//! line per change of state; nothing with -q.

use crate::units::human_size;
use registry::{Event, Progress};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub enum Mode {
    Quiet,
    Plain,
    Tty,
}

impl Mode {
    pub fn pick(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() {
            Mode::Tty
        } else {
            Mode::Plain
        }
    }
}

struct Line {
    id: String,
    text: String,
    /// The state last printed in plain mode, so each is printed once.
    printed: String,
}

pub struct Display {
    mode: Mode,
    push: bool,
    state: Mutex<State>,
}

struct State {
    lines: Vec<Line>,
    drawn: usize,
    last: Option<Instant>,
}

impl Display {
    pub fn new(mode: Mode, push: bool) -> Display {
        Display {
            mode,
            push,
            state: Mutex::new(State {
                lines: Vec::new(),
                drawn: 0,
                last: None,
            }),
        }
    }

    pub fn event(&self, e: Event) {
        if matches!(self.mode, Mode::Quiet) {
            return;
        }
        let id = e.digest.hex()[..12].to_string();
        let text = self.text(&e.progress);
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let idx = match st.lines.iter().position(|l| l.id == id) {
            Some(i) => i,
            None => {
                st.lines.push(Line {
                    id: id.clone(),
                    text: String::new(),
                    printed: String::new(),
                });
                st.lines.len() - 1
            }
        };
        st.lines[idx].text = text;
        match self.mode {
            Mode::Plain => {
                // Byte counts change constantly: a log gets each state once.
                let state = match &e.progress {
                    Progress::Downloading { .. } => "Downloading".to_string(),
                    Progress::Uploading { .. } => "Pushing".to_string(),
                    _ => st.lines[idx].text.clone(),
                };
                let l = &mut st.lines[idx];
                if state != l.printed {
                    println!("{}: {}", l.id, state);
                    l.printed = state;
                }
            }
            Mode::Tty => {
                let moving = matches!(
                    e.progress,
                    Progress::Downloading { .. } | Progress::Uploading { .. }
                );
                let due = st
                    .last
                    .is_none_or(|t| t.elapsed() > Duration::from_millis(100));
                if !moving || due {
                    redraw(&mut st);
                }
            }
            Mode::Quiet => {}
        }
    }

    /// Draws the final state of every line (the throttle may have skipped the last one).
    pub fn finish(&self) {
        if let (Mode::Tty, Ok(mut st)) = (&self.mode, self.state.lock()) {
            redraw(&mut st);
        }
    }

    fn text(&self, p: &Progress) -> String {
        match p {
            Progress::Waiting if self.push => "Preparing".into(),
            Progress::Waiting => "Waiting".into(),
            Progress::Exists if self.push => "Layer already exists".into(),
            Progress::Exists => "Already exists".into(),
            Progress::Downloading { done, total } => format!("Downloading {}", bar(*done, *total)),
            Progress::Verifying => "Verifying Checksum".into(),
            Progress::Extracting => "Extracting".into(),
            Progress::Uploading { done, total } => format!("Pushing {}", bar(*done, *total)),
            Progress::Mounted { from } => format!("Mounted from {from}"),
            Progress::Done if self.push => "Pushed".into(),
            Progress::Done => "Pull complete".into(),
        }
    }
}

/// docker's `[=====>      ]  1.2MB/2.3MB`.
fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    if total == 0 {
        return human_size(done);
    }
    let filled = (done.min(total) * WIDTH / total) as usize;
    let mut s = String::from("[");
    s.push_str(&"=".repeat(filled.saturating_sub(1)));
    if filled > 0 {
        s.push('>');
    }
    s.push_str(&" ".repeat(WIDTH as usize - filled));
    format!("{s}]  {}/{}", human_size(done), human_size(total))
}

fn redraw(st: &mut State) {
    let mut out = std::io::stdout().lock();
    if st.drawn > 0 {
        // Back to the first line we drew, then rewrite each line in full.
        let _ = write!(out, "\x1b[{}A", st.drawn);
    }
    for l in &st.lines {
        let _ = writeln!(out, "\x1b[2K{}: {}", l.id, l.text);
    }
    let _ = out.flush();
    st.drawn = st.lines.len();
    st.last = Some(Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_like_docker() {
        let b = bar(500_000, 1_000_000);
        assert!(b.starts_with("[========================>"), "{b}");
        assert!(b.ends_with("]  500kB/1MB"), "{b}");
        assert!(bar(0, 10).starts_with("[ "));
        assert_eq!(bar(5, 0), "5B");
    }
}
