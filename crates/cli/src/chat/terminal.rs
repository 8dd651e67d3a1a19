//! The terminal side of `switchboard chat`: the line editor (rustyline) that
//! reads typed lines with editing and history, and [`Output`], the one way
//! anything reaches the screen while the editor may be showing its prompt.
//!
//! Lines go through rustyline's external printer, which erases the prompt
//! and the half-typed line, prints above them and draws them again, so
//! incoming messages never garble what is being typed. A single printer
//! thread owns it (its `print` blocks until the editor has taken the line).
//! When standard input or output is not a terminal there is no prompt to
//! protect, and lines go straight to standard output.

use crate::connect::{Failure, Kind};
use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor, ExternalPrinter};
use std::io::Write;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Typed lines kept for Up, Down and Ctrl-R (in memory: the chat writes no
/// history file).
const HISTORY_LINES: usize = 1_000;

/// Lines waiting for the printer; past this, whoever shows a line waits
/// (and the client library then stops reading the socket: nothing is lost).
const WAITING_LINES: usize = 256;

/// How long leaving waits for the last lines to be printed.
const FLUSH_TIME: Duration = Duration::from_secs(2);

/// The line editor: emacs keys, in-memory history without duplicates in a
/// row, lines starting with a space kept out of it (like shells do).
pub fn editor() -> Result<DefaultEditor, Failure> {
    let config = Config::builder()
        .max_history_size(HISTORY_LINES)
        .and_then(|builder| builder.history_ignore_dups(true))
        .map(|builder| builder.history_ignore_space(true).auto_add_history(false).build())
        .map_err(|error| Failure::new(Kind::Io, format!("setting up the line editor: {error}")))?;
    DefaultEditor::with_config(config).map_err(|error| Failure::new(Kind::Io, format!("opening the terminal: {error}")))
}

/// Where the chat's lines go; cheap to clone.
#[derive(Debug, Clone)]
pub struct Output {
    lines: mpsc::Sender<String>,
}

impl Output {
    /// Shows `line` (one or more lines, without the last newline).
    pub async fn show(&self, line: String) {
        // After the printer stopped (the chat is ending) there is no screen left.
        let _ = self.lines.send(line).await;
    }

    /// [`Output::show`] from a thread outside the runtime.
    pub fn show_blocking(&self, line: String) {
        let _ = self.lines.blocking_send(line);
    }
}

/// The printer thread, once every [`Output`] is gone and it printed what
/// was left.
#[derive(Debug)]
pub struct Printer {
    done: std_mpsc::Receiver<()>,
}

impl Printer {
    /// Waits (a little) for the last lines to reach the screen.
    pub fn flush(self) {
        let _ = self.done.recv_timeout(FLUSH_TIME);
    }
}

/// Starts the printer thread for `editor`'s screen.
pub fn start_printer(editor: &mut DefaultEditor) -> Result<(Output, Printer), Failure> {
    match editor.create_external_printer() {
        Ok(printer) => spawn_printer(printer),
        // Not a terminal: nothing to draw around.
        Err(_) => spawn_printer(PlainPrinter),
    }
}

fn spawn_printer<P: ExternalPrinter + Send + 'static>(mut printer: P) -> Result<(Output, Printer), Failure> {
    let (lines, mut waiting) = mpsc::channel::<String>(WAITING_LINES);
    let (finished, done) = std_mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("chat-printer".into())
        .spawn(move || {
            while let Some(mut line) = waiting.blocking_recv() {
                line.push('\n');
                if let Err(error) = printer.print(line) {
                    tracing::debug!(%error, "the terminal is gone");
                    break;
                }
            }
            let _ = finished.send(());
        })
        .map_err(|error| Failure::new(Kind::Io, format!("starting the printer thread: {error}")))?;
    Ok((Output { lines }, Printer { done }))
}

/// Standard output as it is, for pipes and files.
struct PlainPrinter;

impl ExternalPrinter for PlainPrinter {
    fn print(&mut self, line: String) -> rustyline::Result<()> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(line.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }
}

/// One typed line, or the end of typing.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    Line(String),
    /// Ctrl-D, Ctrl-C or the end of standard input.
    End,
}

/// Reads the next line with `prompt`; what is typed (not blank, not
/// starting with a space) joins the history.
pub fn read_line(editor: &mut DefaultEditor, prompt: &str) -> Result<Typed, Failure> {
    match editor.readline(prompt) {
        Ok(line) => {
            if !line.trim().is_empty() {
                // Only a history that cannot take entries fails here: no reason to stop.
                let _ = editor.add_history_entry(line.as_str());
            }
            Ok(Typed::Line(line))
        }
        Err(ReadlineError::Interrupted | ReadlineError::Eof) => Ok(Typed::End),
        Err(error) => Err(Failure::new(Kind::Io, format!("reading the terminal: {error}"))),
    }
}
