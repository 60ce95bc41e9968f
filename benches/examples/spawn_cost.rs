//! What starting a child process costs a process with a large resident
//! memory, with a `pre_exec` closure (the standard library must then fork)
//! and without one (it uses posix_spawn, a vfork). The parse workers used
//! to be started with `pre_exec` for their limits; a daemon with the answer
//! model loaded is several GiB resident, and a fork copies its page tables
//! for every book.
//!
//! `cargo run --release -p mindory-benches --example spawn_cost -- 0 1 3`
//! (GiB made resident before spawning `/bin/true` 200 times each way).

use std::os::unix::process::CommandExt;
use std::time::Instant;

const SPAWNS: u32 = 200;

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("sizes in GiB")).collect();
    println!("| resident | with pre_exec (fork) | without (posix_spawn) |");
    println!("|---:|---:|---:|");
    for gib in if sizes.is_empty() { vec![0, 1, 3] } else { sizes } {
        // Touch every page so that it is resident and mapped.
        let mut memory = vec![0u8; gib << 30];
        for i in (0..memory.len()).step_by(4096) {
            memory[i] = 1;
        }
        let per_spawn = |fork: bool| {
            let started = Instant::now();
            for _ in 0..SPAWNS {
                let mut command = std::process::Command::new("/bin/true");
                if fork {
                    // SAFETY: the closure does nothing.
                    unsafe {
                        command.pre_exec(|| Ok(()));
                    }
                }
                command.status().expect("run /bin/true");
            }
            started.elapsed().as_secs_f64() * 1000.0 / f64::from(SPAWNS)
        };
        let (fork, spawn) = (per_spawn(true), per_spawn(false));
        println!("| {gib} GiB | {fork:.2} ms | {spawn:.2} ms |");
        std::hint::black_box(&memory);
    }
}
