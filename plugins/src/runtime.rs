//! The one wasmtime engine of the process: component model, Cranelift, epoch interruption with
//! a ticker thread, fuel, a pooling allocator (on-demand when the platform refuses the pool),
//! and wasmtime's compilation cache in a directory only Tern writes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::Step;
use crate::error::PluginError;
use crate::host::HostState;
use crate::limits::{Limits, TICK};

/// Instances that can exist at once with the pooling allocator (each one is a step being
/// executed, including those waiting on `http-fetch`).
const POOL_INSTANCES: u32 = 1000;

/// The engine, the linker with the host imports, and the limits. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<HostState>>,
    pub(crate) limits: Limits,
    pooling: bool,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("limits", &self.limits).field("pooling", &self.pooling).finish()
    }
}

/// Stops the epoch ticker when the last runtime handle is dropped.
struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn base_config(cache_dir: Option<&Path>) -> Result<Config, PluginError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(true);
    config.parallel_compilation(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Linear memories keep wasmtime's default 4 GiB reservation plus guard pages, so that
    // compiled code needs no bounds checks; the pool reserves that address space (not memory)
    // per slot and the store's limiter caps what a plugin can actually use.
    if let Some(dir) = cache_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| PluginError::Runtime(format!("cache directory {}: {e}", dir.display())))?;
        let mut cache = wasmtime::CacheConfig::new();
        cache.with_directory(dir);
        let cache = wasmtime::Cache::new(cache).map_err(|e| PluginError::Runtime(format!("compilation cache: {e}")))?;
        config.cache(Some(cache));
    }
    Ok(config)
}

fn pooling(limits: &Limits) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 4)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        .total_stacks(POOL_INSTANCES)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        // componentize-py's CPython links 38 core modules into one component.
        .max_core_instances_per_component(64)
        .max_memory_size(limits.memory_bytes)
        // Reset small memories, tables and stacks in place instead of returning their pages to
        // the kernel after every execution (each execution is a fresh instance).
        .linear_memory_keep_resident(128 << 10)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(64 << 10);
    pool
}

impl Runtime {
    /// Starts the runtime. `cache_dir` holds compiled components keyed by the component's hash
    /// and the engine's settings; `None` compiles every time.
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> Result<Self, PluginError> {
        let mut config = base_config(cache_dir)?;
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(&limits)));
        let (engine, pooling) = match Engine::new(&config) {
            Ok(e) => (e, true),
            Err(e) => {
                tracing::warn!(error = %e, "the pooling allocator is not available here; using on-demand allocation");
                let config = base_config(cache_dir)?;
                (Engine::new(&config).map_err(|e| PluginError::Runtime(e.to_string()))?, false)
            }
        };
        let mut linker = Linker::new(&engine);
        Step::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(|e| PluginError::Runtime(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("tern-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match ticker_engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| PluginError::Runtime(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Self { engine, linker: Arc::new(linker), limits, pooling, _ticker: Arc::new(Ticker(stop)) })
    }

    /// Whether the pooling allocator is in use.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// The limits every execution gets.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}
