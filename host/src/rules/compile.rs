//! Compiling a rule component apart from the run that uses it.
//!
//! Cranelift's scratch memory outlives the compile when it happens on the run's own engine and
//! threads: the engine keeps one compiler context per compiling thread, sized for the largest
//! function it has seen, and the compiling threads' allocator caches keep what was freed on
//! them. A first sync at 100k VMs with children peaked ~40 MiB higher when it compiled the rules
//! than when it loaded them from the cache. Here the compile gets an engine of the same
//! configuration and a thread pool of its own, both dropped (the pool's threads waited for) before
//! the run's engine loads the result, so the run keeps only the compiled code: what a cache hit
//! has.

use std::sync::atomic::{AtomicU32, Ordering};

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// Compiles `bytes` with a throwaway engine built from `config`, on a throwaway thread pool,
/// and loads the result into `engine`. `config` must be the configuration `engine` was built
/// from (its allocation strategy aside): wasmtime refuses an artifact compiled otherwise.
pub(crate) fn compile_apart(
    config: &Config,
    engine: &Engine,
    bytes: &[u8],
) -> wasmtime::Result<(Component, Vec<u8>)> {
    let artifact = std::thread::scope(|scope| {
        scope
            .spawn(|| precompile(config, bytes))
            .join()
            .map_err(|_| wasmtime::Error::msg("the rules compiler's thread panicked"))?
    })?;
    // SAFETY: `deserialize` trusts its input to be wasmtime's own output; these bytes are what
    // `precompile_component` returned a moment ago, in this process.
    let component = unsafe { Component::deserialize(engine, &artifact) }?;
    Ok((component, artifact))
}

/// Numbers each compile's threads (`rules-cc<N>.<i>`), so that one compile's can be told from
/// another's in a thread listing (Linux shows 15 characters of a name).
static COMPILES: AtomicU32 = AtomicU32::new(0);

/// The serialized component, compiled by an engine and pool that are gone when this returns.
fn precompile(config: &Config, bytes: &[u8]) -> wasmtime::Result<Vec<u8>> {
    let engine = Engine::new(config)?;
    let seq = COMPILES.fetch_add(1, Ordering::Relaxed);
    let mut threads = Vec::new();
    let pool = rayon::ThreadPoolBuilder::new()
        // Our own threads, so they can be joined: dropping a pool only asks them to stop.
        .spawn_handler(|thread| {
            let name = thread_name(seq, thread.index());
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(|| thread.run())?,
            );
            Ok(())
        })
        .build()
        .map_err(|e| {
            wasmtime::Error::msg(format!("cannot start the rules compiler's threads: {e}"))
        })?;
    // wasmtime's parallel compilation runs on the pool it is installed in.
    let artifact = pool.install(|| engine.precompile_component(bytes));
    drop(pool);
    drop(engine);
    // Joined, a thread has run its thread-local destructors: its allocator cache is released.
    for thread in threads {
        // A pool thread that panicked has nothing more to give back.
        let _ = thread.join();
    }
    artifact
}

fn thread_name(seq: u32, index: usize) -> String {
    format!("rules-cc{seq}.{index}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::default_component_bytes;
    use std::sync::Mutex;

    /// The tests of this module compile one at a time, so a test knows its compile's number.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn config(fuel: bool) -> Config {
        let mut config = Config::new();
        config.consume_fuel(fuel);
        config.epoch_interruption(true);
        config
    }

    fn export_names(engine: &Engine, component: &Component) -> Vec<String> {
        let ty = component.component_type();
        ty.exports(engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Threads of this process whose name starts with `prefix`.
    #[cfg(target_os = "linux")]
    fn threads_named(prefix: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with(prefix))
            .count()
    }

    #[test]
    fn the_compiled_component_is_the_one_a_direct_compile_gives() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let config = config(true);
        let engine = Engine::new(&config).unwrap();
        let seq = COMPILES.load(Ordering::Relaxed);
        let (apart, artifact) = compile_apart(&config, &engine, default_component_bytes()).unwrap();
        assert!(!artifact.is_empty());
        let direct = Component::new(&engine, default_component_bytes()).unwrap();
        assert_eq!(
            export_names(&engine, &apart),
            export_names(&engine, &direct)
        );
        assert!(!export_names(&engine, &apart).is_empty());
        // Every thread of that compile has exited by the time it returns.
        #[cfg(target_os = "linux")]
        {
            assert_eq!(COMPILES.load(Ordering::Relaxed), seq + 1);
            assert_eq!(threads_named(&format!("rules-cc{seq}.")), 0);
        }
    }

    #[test]
    fn a_configuration_other_than_the_engines_is_an_error_not_a_load() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let engine = Engine::new(&config(true)).unwrap();
        let err = compile_apart(&config(false), &engine, default_component_bytes())
            .map(|_| ())
            .unwrap_err();
        assert!(format!("{err:#}").contains("fuel"), "{err:#}");
    }
}
