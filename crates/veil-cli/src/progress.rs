//! Progress bars for long work (key generation at large N), on stderr and only on a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress reporter for `(phase, done, total)` callbacks.
pub fn key_progress(enabled: bool) -> veil_he::ckks::vector::ProgressFn {
    if !enabled {
        return Box::new(|_, _, _| {});
    }
    let bar = ProgressBar::new(0);
    let style =
        ProgressStyle::with_template("{spinner} {msg:<22} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    Box::new(move |phase, done, total| {
        bar.set_message(phase.to_string());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if phase == "Galois keys" && done == total {
            bar.finish_and_clear();
        }
    })
}

/// Whether progress bars should be shown (stderr is a terminal).
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// A spinner with a message for work of unknown length (e.g. a DP query over a large file),
/// shown only on a terminal; cleared when dropped.
pub fn spinner(message: &str) -> Option<Spinner> {
    if !interactive() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(Spinner(bar))
}

/// A running spinner.
pub struct Spinner(ProgressBar);

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
