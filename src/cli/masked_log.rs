//! Log output with every known secret value masked: each formatted log line passes through
//! [`tern_engine::secrets::known::mask_bytes`] before it reaches standard error.

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
        let result = io::stderr().lock().write_all(&masked);
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
