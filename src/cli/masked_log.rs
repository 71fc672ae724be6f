//! Log output with every known secret value masked: each formatted log line passes through
//! [`tern_engine::secrets::known::mask_bytes`], then [`super::terminal::safe_log_line`] (one
//! line, no control characters), before it reaches standard error.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Makes one [`MaskedLine`] per log event.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaskedStderr;

/// Collects one formatted event (bounded by the event's own size) and writes it masked when
/// dropped, so a secret split across several `write` calls is still caught.
#[derive(Debug, Default)]
pub struct MaskedLine {
    buf: Vec<u8>,
}

impl Write for MaskedLine {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let masked = tern_engine::secrets::known::mask_bytes(&self.buf);
        // One event, one line, no control character from what it quotes (log forging,
        // terminal escapes): see `terminal::safe_log_line`.
        let line = super::terminal::safe_log_line(&String::from_utf8_lossy(&masked));
        let result = io::stderr().lock().write_all(line.as_bytes());
        self.buf.clear();
        result
    }
}

impl Drop for MaskedLine {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskedLine;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedLine::default()
    }
}
