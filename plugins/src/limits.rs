//! What one plugin step execution may use.

use std::time::Duration;

/// Per-execution limits (SECURITY R10). Every plugin step runs in a fresh store with these.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest linear memory (and sum of memories) of one execution.
    pub memory_bytes: usize,
    /// WebAssembly instructions (fuel) one execution may run; a deterministic bound next to
    /// the wall-clock deadline.
    pub fuel: u64,
    /// Longest wall-clock time one execution may take (capped by the run's own deadline).
    pub max_duration: Duration,
    /// Largest `variables-json` plus outcome a plugin may return.
    pub output_bytes: usize,
    /// Most `http-fetch` calls one execution may make.
    pub http_calls: u32,
    /// Longest time compiling one component may take.
    pub compile_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            fuel: 2_000_000_000,
            max_duration: Duration::from_secs(10),
            output_bytes: 1 << 20,
            http_calls: 16,
            compile_timeout: Duration::from_secs(60),
        }
    }
}

/// The epoch ticker's period: the deadline is enforced with this granularity.
pub const TICK: Duration = Duration::from_millis(2);
