//! `diskscope convert`: the core's plan carried out with what the host offers.
//!
//! Stored runs are copied by the kernel (copy_file_range) from the files the chain names;
//! zero runs are never written (the output is created at full size, as holes); computed
//! runs (compressed clusters, journal replays) are cut into chunks decoded by a few worker
//! threads, each with its own opened chain (the core's caches are single-threaded), fed
//! through a bounded queue so memory stays at a few chunks whatever the image size.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;

use anyhow::{anyhow, Result};
use diskscope_core::convert::{write_nonzero, Part, Sink, COPY_CHUNK};
use diskscope_core::io::read_clipped;
use diskscope_core::{Chain, Error};

use crate::native;

/// Positioned writes into the output; several threads share it.
struct Out<'a>(&'a File);

impl Sink for Out<'_> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        self.0.write_all_at(data, offset).map_err(|e| Error::Io { offset, len: data.len() as u64, message: e.to_string() })
    }
}

/// Decoding threads: one per core, at most 8.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// Guest range to read through a chain and write where it is not zero.
type Job = (u64, u64);

fn worker(chain: Result<Chain>, out: &File, jobs: &Mutex<Receiver<Job>>, done: &AtomicU64, stop: &AtomicBool) -> Result<(), Error> {
    let chain = chain.map_err(|e| Error::Io { offset: 0, len: 0, message: format!("{:#}", e) })?;
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut sink = Out(out);
    loop {
        // The lock is held only to take the next job, not while decoding it.
        let next = jobs.lock().map_err(|_| Error::Cancelled)?.recv();
        let Ok((guest, len)) = next else { return Ok(()) };
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let chunk = &mut buf[..len as usize];
        chain.read(guest, chunk)?;
        write_nonzero(&mut sink, guest, chunk)?;
        done.fetch_add(len, Ordering::Relaxed);
    }
}

/// Convert `chain` into `out` (already created at the disk's size, all holes). `reopen`
/// opens the same chain again, in a decoding thread. `progress(done)` is called from this
/// thread as work completes.
pub fn convert(chain: &Chain, reopen: &(dyn Fn() -> Result<Chain> + Sync), out: &File, progress: &mut dyn FnMut(u64)) -> Result<()> {
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let n = threads();
    let (tx, rx) = sync_channel::<Job>(2 * n);
    let rx = Mutex::new(rx);
    let mut sources: std::collections::HashMap<(u32, u16), Option<File>> = Default::default();
    let mut buf = Vec::new();
    let mut sink = Out(out);
    std::thread::scope(|scope| -> Result<()> {
        let mut workers = Vec::new();
        let mut guest = 0u64;
        let result = chain.plan(|part| {
            let length = match part {
                Part::Zero { length } => length,
                Part::File { layer, file, offset, length } => {
                    let src = sources
                        .entry((layer, file))
                        .or_insert_with(|| native::path_of(chain, layer as usize, file).and_then(|p| File::open(p).ok()));
                    let copied = match src {
                        Some(src) => native::copy_range(src, offset, out, guest, length)?,
                        None => false,
                    };
                    if !copied {
                        // Read and write here, in large sequential pieces.
                        buf.resize(COPY_CHUNK, 0);
                        let mut at = 0;
                        while at < length {
                            let k = (length - at).min(COPY_CHUNK as u64) as usize;
                            match chain.layers[layer as usize].image.file(file) {
                                Some(f) => read_clipped(&**f, offset + at, &mut buf[..k])?,
                                None => chain.read(guest + at, &mut buf[..k])?,
                            }
                            write_nonzero(&mut sink, guest + at, &buf[..k])?;
                            at += k as u64;
                        }
                    }
                    done.fetch_add(length, Ordering::Relaxed);
                    length
                }
                Part::Computed { start, length } => {
                    if workers.is_empty() {
                        for _ in 0..n {
                            let (rx, done, stop) = (&rx, &done, &stop);
                            workers.push(scope.spawn(move || {
                                // The core's chain is not Send: each thread opens its own.
                                let r = worker(reopen(), out, rx, done, stop);
                                if r.is_err() {
                                    stop.store(true, Ordering::Relaxed);
                                }
                                r
                            }));
                        }
                    }
                    let mut at = 0;
                    while at < length {
                        let k = (length - at).min(COPY_CHUNK as u64);
                        if stop.load(Ordering::Relaxed) || tx.send((start + at, k)).is_err() {
                            return Err(Error::Cancelled); // a worker failed: its error is reported
                        }
                        at += k;
                        progress(done.load(Ordering::Relaxed));
                    }
                    length
                }
            };
            if matches!(part, Part::Zero { .. }) {
                done.fetch_add(length, Ordering::Relaxed);
            }
            guest += length;
            progress(done.load(Ordering::Relaxed));
            Ok(())
        });
        drop(tx);
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let mut first: Option<Error> = None;
        for w in workers {
            match w.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first.get_or_insert(e);
                }
                Err(_) => return Err(anyhow!("a decoding thread panicked")),
            }
        }
        // A worker's own error says more than the planner's "cancelled".
        if let Some(e) = first {
            return Err(e.into());
        }
        result?;
        progress(done.load(Ordering::Relaxed));
        Ok(())
    })
}
