//! One size budget for every template output of a request: the URL, the query, the headers and
//! the body together may splice at most [`MAX_REQUEST_TEMPLATE_BYTES`] bytes of values, whatever
//! position a placeholder is in (a body field that is exactly `"{{big}}"` included).
//!
//! The budget wraps the [`Scope`] the request renders with, so every placeholder is charged
//! when it is resolved, before its value is copied anywhere; a value's size is its JSON
//! encoding's, measured without building it and abandoned as soon as it is over the budget.

use std::borrow::Cow;
use std::cell::Cell;
use std::io;

use serde_json::Value;

use crate::template::{MAX_RENDERED_BYTES, RenderError, Scope, VarRef};

/// Most bytes of values one request may splice in, over all its templates (1 MiB, the same as
/// a single template's limit).
pub const MAX_REQUEST_TEMPLATE_BYTES: usize = MAX_RENDERED_BYTES;

/// A [`Scope`] that charges every resolved value against one budget.
pub struct Budgeted<'a> {
    inner: &'a dyn Scope,
    left: Cell<usize>,
}

impl<'a> Budgeted<'a> {
    /// A budget of `bytes` over `inner`.
    pub fn new(inner: &'a dyn Scope, bytes: usize) -> Self {
        Self { inner, left: Cell::new(bytes) }
    }
}

/// Counts bytes written, failing once past a limit.
struct Counter {
    count: usize,
    limit: usize,
}

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.count += buf.len();
        if self.count > self.limit {
            return Err(io::Error::other("over budget"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The size of `value` as spliced (strings raw, other values as JSON), or `None` when it is
/// larger than `limit`.
fn size_within(value: &Value, limit: usize) -> Option<usize> {
    match value {
        Value::String(s) => (s.len() <= limit).then_some(s.len()),
        other => {
            let mut c = Counter { count: 0, limit };
            serde_json::to_writer(&mut c, other).ok().map(|()| c.count)
        }
    }
}

impl Scope for Budgeted<'_> {
    fn resolve(&self, var: &VarRef) -> Result<Cow<'_, Value>, RenderError> {
        let value = self.inner.resolve(var)?;
        self.charge(&var.raw, &value)?;
        Ok(value)
    }

    fn root(&self, var: &VarRef) -> Result<Cow<'_, Value>, RenderError> {
        self.inner.root(var)
    }

    fn charge(&self, raw: &str, value: &Value) -> Result<(), RenderError> {
        let left = self.left.get();
        match size_within(value, left) {
            Some(n) => {
                self.left.set(left - n);
                Ok(())
            }
            None => Err(RenderError::Rejected {
                var: raw.to_string(),
                reason: format!(
                    "makes the request larger than {MAX_REQUEST_TEMPLATE_BYTES} bytes: the values spliced into the URL, query, headers and body count against one limit; send less (a field or a page of it) instead"
                ),
            }),
        }
    }
}
