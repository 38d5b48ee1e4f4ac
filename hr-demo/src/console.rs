//! What the examples print while they work: progress bars on long phases
//! when stderr is a terminal, one timestamped line per event otherwise (logs,
//! CI, pipes).

use hr_core::{PropagateError, PropagationReport, Receipt};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default: warnings).
///
/// Installs the process-wide subscriber: call it once, from a program's
/// `main`, never from a library.
pub fn init_logging() {
    init_logging_as(LogFormat::Text);
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event, its spans' fields in front.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`,
    /// and `span`/`spans` with the fields of the spans it happened in, such
    /// as a hub run's `run_id`), for a log shipper.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?} is neither text nor json")),
        }
    }
}

/// [`init_logging`] in the given format.
pub fn init_logging_as(format: LogFormat) {
    // Progress lines are INFO events of `hr::console` when the log is JSON (see `Console::events`).
    let default = if format == LogFormat::Json { "warn,hr::console=info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Where progress goes.
#[derive(Debug, Clone)]
pub struct Console {
    bars: bool,
    events: bool,
    started: Instant,
}

impl Console {
    /// Bars if stderr is a terminal, lines otherwise.
    pub fn detect() -> Self {
        Console { bars: std::io::stderr().is_terminal(), events: false, started: Instant::now() }
    }

    /// Lines only (tests, logs).
    pub fn lines() -> Self {
        Console { bars: false, events: false, started: Instant::now() }
    }

    /// Every line a tracing event at INFO instead (target `hr::console`),
    /// so it is written in the log's format inside the current spans (a
    /// JSON log stays one object per line).
    pub fn events() -> Self {
        Console { bars: false, events: true, started: Instant::now() }
    }

    /// One event, with the time since start.
    pub fn line(&self, message: &str) {
        if self.events {
            tracing::info!(target: "hr::console", "{message}");
        } else {
            eprintln!("[{:>8.0} ms] {message}", self.started.elapsed().as_secs_f64() * 1000.0);
        }
    }

    /// A long phase: a spinner (`total` = `None`) or a bar, on a terminal;
    /// nothing otherwise (the caller logs a line when it ends).
    pub fn phase(&self, message: &str, total: Option<u64>) -> Phase {
        if !self.bars {
            return Phase { bar: None };
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n)
                .with_style(ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_bar())),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Phase { bar: Some(bar) }
    }

    /// Waits until every target applied what `receipt` delivered
    /// ([`Receipt::applied`]), showing a bar of records applied, titled
    /// `what`, on a terminal.
    pub async fn confirm(&self, what: &str, receipt: &Receipt, deadline: Duration) -> Result<PropagationReport, PropagateError> {
        let phase = self.phase(what, Some(0));
        let mut most = 0u64;
        receipt
            .applied_with_progress(deadline, &mut |left| {
                most = most.max(left);
                phase.set_length(most);
                phase.set_position(most - left);
            })
            .await
    }
}

/// A phase in progress; cleared when dropped.
pub struct Phase {
    bar: Option<ProgressBar>,
}

impl Phase {
    /// Work done so far.
    pub fn set_position(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// Changes the total.
    pub fn set_length(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
