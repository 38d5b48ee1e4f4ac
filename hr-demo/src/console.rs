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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Where progress goes.
#[derive(Debug, Clone)]
pub struct Console {
    bars: bool,
    started: Instant,
}

impl Console {
    /// Bars if stderr is a terminal, lines otherwise.
    pub fn detect() -> Self {
        Console { bars: std::io::stderr().is_terminal(), started: Instant::now() }
    }

    /// Lines only (tests, logs).
    pub fn lines() -> Self {
        Console { bars: false, started: Instant::now() }
    }

    /// One event, with the time since start.
    pub fn line(&self, message: &str) {
        eprintln!("[{:>8.0} ms] {message}", self.started.elapsed().as_secs_f64() * 1000.0);
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
