//! Structured logging: text for people, JSON lines for pipelines (`--log-format`).
//!
//! Every formatted record passes the redaction filter ([`scaff_core::redact::global`]: every
//! stored secret value and the patterns: tokens, keys, e-mail addresses, phone numbers, SSNs,
//! card numbers) before it reaches stderr; see [`RedactingMakeWriter`].

use std::io::{self, Write};
use std::sync::Arc;

use scaff_core::redact::{self, Redactor, SharedRedactor};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

/// Installs the global log subscriber; logs go to stderr so stdout stays for command output,
/// through the process-wide redactor.
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingMakeWriter::new(
            io::stderr,
            redact::global().clone(),
        ))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_span_events(FmtSpan::NONE);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Wraps a [`MakeWriter`] so that each record is redacted before it is written.
///
/// The fmt layer formats a whole record and hands it to one writer (one `write_all`); the
/// [`RedactingWriter`] it gets buffers whatever it is given and writes the redacted record
/// when it is flushed or dropped, so a record split over several `write` calls is still
/// redacted as a whole.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
    redactor: SharedRedactor,
}

impl<M> RedactingMakeWriter<M> {
    /// Redacts what `inner` would write with the redactor in force in `redactor` when each
    /// record starts.
    pub fn new(inner: M, redactor: SharedRedactor) -> Self {
        Self { inner, redactor }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer(), self.redactor.current())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer_for(meta), self.redactor.current())
    }
}

/// Buffers one record and writes it redacted on [`Write::flush`] or drop.
pub struct RedactingWriter<W: Write> {
    inner: W,
    redactor: Arc<Redactor>,
    buf: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    fn new(inner: W, redactor: Arc<Redactor>) -> Self {
        Self {
            inner,
            redactor,
            buf: Vec::new(),
        }
    }

    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let record = String::from_utf8_lossy(&self.buf);
        let redacted = self.redactor.text(&record);
        let result = self.inner.write_all(redacted.as_bytes());
        self.buf.clear();
        result
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write (as with plain stderr).
        let _ = self.write_out();
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use scaff_core::redact::Patterns;

    use super::*;

    /// A `MakeWriter` over a shared buffer that records how many writers were made.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Captured {
        fn text(&self) -> String {
            let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8(guard.0.clone()).expect("utf-8")
        }

        fn writers(&self) -> usize {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).1
        }
    }

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
            guard.0.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Self::Writer {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
            self.clone()
        }
    }

    const SECRET: &str = "s3cr3t-Value-42";

    fn redactor() -> SharedRedactor {
        SharedRedactor::new(Redactor::new([SECRET], Patterns::On))
    }

    fn log_everything() {
        let span = tracing::info_span!("step", run_id = "r-1", api_key = SECRET);
        let _entered = span.enter();
        tracing::info!(
            user = "ann@example.com",
            card = "4111 1111 1111 1111",
            order = 4111111111111112u64,
            password = "pw-12345",
            "calling with Authorization: Bearer abcdef.123456 and key {SECRET}"
        );
        tracing::warn!(count = 3, "second record");
    }

    #[track_caller]
    fn assert_redacted(out: &str) {
        for leaked in [
            SECRET,
            "ann@example.com",
            "abcdef.123456",
            "4111 1111 1111 1111",
            "pw-12345",
        ] {
            assert!(!out.contains(leaked), "{leaked} leaked: {out}");
        }
        for kept in [
            "calling with Authorization: Bearer [REDACTED:bearer] and key [REDACTED]",
            "[REDACTED:email]",
            "[REDACTED:card]",
            "4111111111111112",
            "second record",
            "r-1",
        ] {
            assert!(out.contains(kept), "{kept} missing: {out}");
        }
    }

    #[test]
    fn text_records_are_redacted() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(RedactingMakeWriter::new(captured.clone(), redactor()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let out = captured.text();
        assert_redacted(&out);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert_eq!(captured.writers(), 2, "one writer per record");
    }

    #[test]
    fn coloured_text_records_are_redacted() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(RedactingMakeWriter::new(captured.clone(), redactor()))
            .with_ansi(true)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let out = captured.text();
        for leaked in [
            SECRET,
            "ann@example.com",
            "abcdef.123456",
            "4111 1111",
            "pw-12345",
        ] {
            assert!(!out.contains(leaked), "{leaked} leaked: {out}");
        }
    }

    #[test]
    fn json_records_are_redacted_and_stay_json() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(RedactingMakeWriter::new(captured.clone(), redactor()))
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let out = captured.text();
        assert_redacted(&out);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["user"], "[REDACTED:email]");
        assert_eq!(lines[0]["span"]["api_key"], "[REDACTED]");
        assert_eq!(lines[0]["password"], "[REDACTED:key]");
    }

    #[test]
    fn a_record_written_in_pieces_is_redacted_whole() {
        let captured = Captured::default();
        let make = RedactingMakeWriter::new(captured.clone(), redactor());
        {
            let mut w = make.make_writer();
            for piece in ["mail ann@exa", "mple.com and s3cr3t-", "Value-42\n"] {
                w.write_all(piece.as_bytes()).expect("write");
            }
        }
        assert_eq!(captured.text(), "mail [REDACTED:email] and [REDACTED]\n");
    }

    #[test]
    fn new_secrets_apply_to_the_next_record() {
        let captured = Captured::default();
        let shared = SharedRedactor::default();
        let make = RedactingMakeWriter::new(captured.clone(), shared.clone());
        writeln!(make.make_writer(), "value fresh-secret-1").expect("write");
        shared.add_secrets(["fresh-secret-1"]);
        writeln!(make.make_writer(), "value fresh-secret-1").expect("write");
        assert_eq!(captured.text(), "value fresh-secret-1\nvalue [REDACTED]\n");
    }
}
