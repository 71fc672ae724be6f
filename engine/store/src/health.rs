//! Whether the store can serve right now ([`Backend::readiness`](crate::Backend::readiness)):
//! the checks behind `GET /readyz`. Each check is bounded by [`READY_TIMEOUT`] and says what
//! failed in words that name neither the database's location nor the driver's text ([`Fault`]);
//! those go to the log, with the check's name.
//!
//! - `store-query`: a trivial query through the pool answers (the database is reachable and
//!   the pool can get a working connection; a connection the server cut is replaced).
//! - `store-write`: a one-row write transaction commits (the `ready_probe` row of `meta`), and
//!   for SQLite the database file can be written (its permissions, a read-only file system):
//!   a full disk, a read-only file or a read-only (standby) server refuse writes, which is an
//!   outage for Tern, whose every message writes.

use std::time::Duration;

use serde::Serialize;

/// Longest time one check may take before it counts as failed.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The name of the check that the database answers a query.
pub const CHECK_QUERY: &str = "store-query";
/// The name of the check that the database takes writes.
pub const CHECK_WRITE: &str = "store-write";

/// Why a check failed, in the operator's words, without the database's location or driver
/// message (those are logged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// No connection: refused, reset, cut by the server or a proxy, or the pool has none.
    #[error("the database does not answer: it cannot be reached or the connection was cut")]
    Unreachable,
    /// The check took longer than [`READY_TIMEOUT`].
    #[error("the database did not answer within 2 s")]
    TimedOut,
    /// Writes are refused because the database is read-only.
    #[error(
        "the database refuses writes: it is read-only (the file's permissions, a read-only file system, or a standby server)"
    )]
    ReadOnly,
    /// Writes are refused because the disk is full.
    #[error("the database refuses writes: its disk is full")]
    DiskFull,
    /// Another process holds the database's write lock.
    #[error("the database is locked by another process")]
    Locked,
    /// The database reported an input/output error.
    #[error("the database reported an input/output error")]
    Io,
    /// The database is starting up or shutting down.
    #[error("the database is starting up or shutting down")]
    NotAvailable,
    /// Another error (the log has the driver's message).
    #[error("the database answered with an error")]
    Failed,
}

impl Fault {
    /// The fault a driver error stands for.
    pub(crate) fn of(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unreachable,
            sqlx::Error::Database(db) => db.code().map_or(Self::Failed, |code| Self::of_code(&code)),
            _ => Self::Failed,
        }
    }

    /// A SQLite result code (decimal, possibly extended) or a PostgreSQL SQLSTATE.
    fn of_code(code: &str) -> Self {
        // PostgreSQL's SQLSTATEs are five characters, some of them all digits (`25006`); SQLite's
        // codes are numbers of at most four digits.
        if let Ok(n) = code.parse::<i64>()
            && code.len() < 5
        {
            // SQLite: the primary code is the low byte of an extended one.
            return match n & 0xff {
                8 => Self::ReadOnly,
                13 => Self::DiskFull,
                5 | 6 => Self::Locked,
                10 | 14 => Self::Io,
                _ => Self::Failed,
            };
        }
        match code {
            "25006" => Self::ReadOnly,
            "53100" => Self::DiskFull,
            "57P01" | "57P02" | "57P03" => Self::NotAvailable,
            c if c.starts_with("08") => Self::Unreachable,
            "55P03" | "40P01" => Self::Locked,
            c if c.starts_with("58") => Self::Io,
            _ => Self::Failed,
        }
    }
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// [`CHECK_QUERY`] or [`CHECK_WRITE`].
    pub name: &'static str,
    /// `None` when it passed; `Some` with why it failed. A check that was not run because an
    /// earlier one failed has the earlier one's fault.
    pub fault: Option<Fault>,
    /// The driver's or the file system's message, with the location: for the log only.
    pub detail: Option<String>,
}

impl Check {
    pub(crate) fn passed(name: &'static str) -> Self {
        Self { name, fault: None, detail: None }
    }

    pub(crate) fn failed(name: &'static str, fault: Fault, detail: String) -> Self {
        Self { name, fault: Some(fault), detail: Some(detail) }
    }
}

/// Whether the file at `path` can be written: its permission bits (a file chmod'ed read-only
/// counts as read-only, also for a superuser, whom the bits do not stop), then `access(2)`
/// with `W_OK` (a read-only file system, an immutable file, permissions). A missing file is
/// fine when `optional`.
///
/// The file is never opened: closing any descriptor of a file releases every POSIX lock the
/// process holds on it, SQLite's included (fcntl locks belong to the process, not to the
/// descriptor), and another process's SQLite connection would then think it is alone with
/// the database (deleting its write-ahead log, or writing under a reader) — a corrupted file.
pub(crate) fn file_writable(path: &std::path::Path, optional: bool) -> Result<(), (Fault, String)> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err((Fault::Io, format!("{shown}: {e}"))),
    };
    if meta.permissions().readonly() {
        return Err((Fault::ReadOnly, format!("{shown} has no write permission")));
    }
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).map_err(|e| {
        let fault = match e {
            rustix::io::Errno::ROFS | rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => Fault::ReadOnly,
            _ => Fault::Io,
        };
        (fault, format!("{shown}: {e}"))
    })
}

/// Every check of a [`Backend::readiness`](crate::Backend::readiness) call, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Readiness {
    /// Whether every check passed.
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|c| c.fault.is_none())
    }

    /// The first check that failed.
    pub fn failed(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.fault.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::Fault;

    #[test]
    fn driver_codes_become_faults() {
        assert_eq!(Fault::of_code("8"), Fault::ReadOnly);
        assert_eq!(Fault::of_code("1032"), Fault::ReadOnly, "SQLITE_READONLY_DBMOVED");
        assert_eq!(Fault::of_code("13"), Fault::DiskFull);
        assert_eq!(Fault::of_code("5"), Fault::Locked);
        assert_eq!(Fault::of_code("25006"), Fault::ReadOnly);
        assert_eq!(Fault::of_code("53100"), Fault::DiskFull);
        assert_eq!(Fault::of_code("57P01"), Fault::NotAvailable);
        assert_eq!(Fault::of_code("08006"), Fault::Unreachable);
        assert_eq!(Fault::of_code("42P01"), Fault::Failed);
    }
}
