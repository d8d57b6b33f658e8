//! Batches on several threads: the sync's rules calls and `rules bench` (both sides) run their
//! batches through [`map_batches`], so the bench times the path the sync takes.
//!
//! Each batch call already has its own store and instance (see the runtime), so calls share
//! nothing but the engine, the compiled component and the instance pool: running them at once
//! changes no answer. Results come back in input order whatever order the batches finish in, so
//! a plan is the same at any thread count; each batch keeps its own deadline (the epoch deadline
//! is set per store when its call starts) and its own error.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::limits::POOL_INSTANCES;

/// Threads the rules use: one per core the OS gives this process, at most the instance pool's
/// size (each running call holds one instance). Why not more: calls are CPU-bound, so threads
/// beyond the cores only add switching.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(POOL_INSTANCES as usize)
        .max(1)
}

/// `f(index, input)` for every input, on up to `threads` threads (the calling one included);
/// the outputs in input order. Workers take the next batch as they finish one, so a slow batch
/// does not hold the others back. One thread, or one input, runs on the caller's thread alone.
/// A panic in `f` propagates to the caller once every worker has stopped.
pub fn map_batches<I, O, F>(inputs: Vec<I>, threads: usize, f: F) -> Vec<O>
where
    I: Send,
    O: Send,
    F: Fn(usize, I) -> O + Sync,
{
    let n = inputs.len();
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return inputs
            .into_iter()
            .enumerate()
            .map(|(i, x)| f(i, x))
            .collect();
    }
    // Each slot is taken exactly once (the counter hands out each index once); the mutexes are
    // never contended and only make the hand-over safe.
    let slots: Vec<Mutex<Option<I>>> = inputs.into_iter().map(|x| Mutex::new(Some(x))).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else {
                return done;
            };
            let input = slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("each batch is taken once");
            done.push((i, f(i, input)));
        }
    };
    let mut outputs: Vec<Option<O>> = std::iter::repeat_with(|| None).take(n).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (1..threads)
            .map(|_| {
                std::thread::Builder::new()
                    .name("rules-batch".into())
                    .spawn_scoped(s, work)
            })
            .collect();
        let mut place = |done: Vec<(usize, O)>| {
            for (i, o) in done {
                outputs[i] = Some(o);
            }
        };
        place(work());
        for w in workers {
            match w {
                Ok(handle) => match handle.join() {
                    Ok(done) => place(done),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                // A thread that cannot start takes no batch: the others (the caller's included)
                // take them all.
                Err(e) => tracing::debug!(error = %e, "cannot start a rules thread"),
            }
        }
    });
    outputs
        .into_iter()
        .map(|o| o.expect("every batch was run"))
        .collect()
}

/// `f(inputs, outputs)` over up to `threads` contiguous ranges of `inputs` and the same ranges
/// of `outputs` (as long as `inputs`), each range at least `min_range` long (but for the
/// last), the threads started once (the calling one included). Why ranges and not batches
/// handed out: a caller that walks its inputs in order (the memo's lookups) keeps walking in
/// order on each thread, and writes into one result made beforehand.
pub fn map_ranges<I, O, F>(inputs: &[I], outputs: &mut [O], threads: usize, min_range: usize, f: F)
where
    I: Sync,
    O: Send,
    F: Fn(&[I], &mut [O]) + Sync,
{
    assert_eq!(inputs.len(), outputs.len(), "one output per input");
    let threads = threads.clamp(1, inputs.len().div_ceil(min_range.max(1)).max(1));
    let per = inputs.len().div_ceil(threads).max(1);
    let ranges: Vec<_> = inputs.chunks(per).zip(outputs.chunks_mut(per)).collect();
    map_batches(ranges, threads, |_, (inputs, outputs)| f(inputs, outputs));
}

/// CPU time of this process so far (user and system, every thread), from `/proc/self/stat`
/// in clock ticks (10 ms); `None` where there is no such file. With several threads, CPU time
/// and wall time differ: a report gives both.
pub fn process_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command (which may hold spaces) start after its closing `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the state.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // The kernel's USER_HZ is 100 on every Linux architecture this runs on.
    Some((utime + stime) * 10_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs stay in input order at any thread count, even when later batches finish first.
    #[test]
    fn outputs_keep_input_order_whatever_finishes_first() {
        let inputs: Vec<u64> = (0..40).collect();
        for threads in [1, 2, 3, 8] {
            let out = map_batches(inputs.clone(), threads, |i, x| {
                // Early batches are the slowest.
                std::thread::sleep(std::time::Duration::from_micros((40 - x) * 50));
                (i, x * 10)
            });
            let want: Vec<(usize, u64)> = (0..40).map(|x| (x as usize, x * 10)).collect();
            assert_eq!(out, want, "at {threads} threads");
        }
    }

    /// Several threads really run at once when asked: each batch waits until the other has
    /// started. Run one after the other, the first would wait for ever; the minute's bound only
    /// turns that hang into a failure, it measures nothing.
    #[test]
    fn batches_run_at_once_on_several_threads() {
        let started = (std::sync::Mutex::new(0usize), std::sync::Condvar::new());
        let out = map_batches(vec![(), ()], 2, |i, ()| {
            let (count, cv) = &started;
            let mut n = count.lock().unwrap();
            *n += 1;
            cv.notify_all();
            let (_count, wait) = cv
                .wait_timeout_while(n, std::time::Duration::from_secs(60), |n| *n < 2)
                .unwrap();
            assert!(
                !wait.timed_out(),
                "the other batch never started: batches ran one after the other"
            );
            i
        });
        assert_eq!(out, vec![0, 1]);
    }

    /// Every input's output lands in its place, on as many threads as the ranges allow and
    /// no more: each range is contiguous and at least `min_range` long (but for the last).
    #[test]
    fn ranges_cover_every_input_in_place() {
        for (n, threads, min_range, want_ranges) in [
            (0, 2, 4, 0),
            (3, 2, 4, 1),
            (8, 2, 4, 2),
            (9, 2, 4, 2),
            (9, 8, 1, 5),
            (10, 3, 1, 3),
            (1000, 2, 256, 2),
        ] {
            let inputs: Vec<usize> = (0..n).collect();
            let mut outputs = vec![usize::MAX; n];
            let ranges = std::sync::Mutex::new(Vec::new());
            map_ranges(
                &inputs,
                &mut outputs,
                threads,
                min_range,
                |inputs, outputs| {
                    // Contiguous: the inputs of a range follow each other.
                    assert!(inputs.windows(2).all(|w| w[1] == w[0] + 1));
                    ranges.lock().unwrap().push((inputs[0], inputs.len()));
                    for (x, out) in inputs.iter().zip(outputs) {
                        *out = x * 3;
                    }
                },
            );
            let mut ranges = ranges.into_inner().unwrap();
            ranges.sort_unstable();
            assert_eq!(
                ranges.len(),
                want_ranges,
                "{n} at {threads} threads: {ranges:?}"
            );
            let (last, head) = ranges
                .split_last()
                .map_or((None, &[][..]), |(l, h)| (Some(l), h));
            assert!(head.iter().all(|r| r.1 >= min_range), "{ranges:?}");
            assert!(last.is_none_or(|l| l.0 + l.1 == n), "{ranges:?}");
            let want: Vec<usize> = (0..n).map(|x| x * 3).collect();
            assert_eq!(outputs, want, "{n} at {threads} threads");
        }
    }

    #[test]
    fn no_input_gives_no_output() {
        let out: Vec<u8> = map_batches(Vec::<u8>::new(), 4, |_, x| x);
        assert!(out.is_empty());
    }

    #[test]
    fn threads_are_at_least_one_and_at_most_the_pool() {
        let t = threads();
        assert!((1..=POOL_INSTANCES as usize).contains(&t));
    }
}
