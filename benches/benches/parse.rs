//! Parse throughput per format, through the same sandboxed worker process
//! the daemon uses (spawn, bytes over a pipe, parse, reply), and in-process
//! for comparison. Prints a table: MB/s for every format, pages/s for PDFs,
//! and the worker's peak memory.
//!
//! `cargo build --release --bins && cargo bench -p mindory-benches --bench parse`

use std::time::{Duration, Instant};

use mindory_benches::{corpus, models_dir};
use mindory_daemon::parse::sandbox::{self, ParserConfig};

const FILES: &[&str] = &[
    "txt/prideprejudice.txt",
    "html/pp.html",
    "epub/pp.epub",
    "docx/pp.docx",
    "odt/pp.odt",
    "rtf/pp.rtf",
    "fb2/pp.fb2",
    "mobi/debian-paketmanagement.mobi",
    "pdf/R-intro.pdf",
    "pdf/debian-reference.en.pdf",
    "pdf/fullrefman.pdf",
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes harness flags; this bench takes none.
    let release = mindory_benches::release_bin("mindoryd");
    let pdfium = mindory_proto::models::ModelPaths::new(&models_dir()).pdfium;
    let mut sandboxed = ParserConfig::new(pdfium.clone());
    sandboxed.worker_exe = Some(release);
    let mut in_process = sandboxed.clone();
    in_process.worker_exe = None;
    let runs: usize = std::env::var("MINDORY_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    println!("| file | format | MB | pages | sandboxed ms | MB/s | pages/s | in-process ms | worker peak RSS MiB |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for rel in FILES {
        let path = corpus(rel);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mb = bytes.len() as f64 / 1e6;
        let (mut times, mut local, mut peak, mut pages, mut format) = (Vec::new(), Vec::new(), 0u64, 0u32, "");
        for _ in 0..runs {
            let t = Instant::now();
            let parsed = runtime.block_on(sandbox::parse(&sandboxed, &path, bytes.clone())).expect("parses");
            times.push(t.elapsed());
            peak = peak.max(parsed.peak_rss_kib);
            pages = parsed
                .document
                .blocks
                .iter()
                .filter_map(|b| b.page.as_ref().map(|p| p.number))
                .max()
                .unwrap_or(0);
            format = parsed.format.name();
            let t = Instant::now();
            runtime.block_on(sandbox::parse(&in_process, &path, bytes.clone())).expect("parses");
            local.push(t.elapsed());
        }
        let (t, l) = (median(times), median(local));
        let secs = t.as_secs_f64();
        let pages_per_s = if pages > 0 {
            format!("{:.0}", pages as f64 / secs)
        } else {
            "–".into()
        };
        println!(
            "| {rel} | {format} | {mb:.2} | {} | {:.0} | {:.1} | {pages_per_s} | {:.0} | {:.0} |",
            if pages > 0 { pages.to_string() } else { "–".into() },
            secs * 1e3,
            mb / secs,
            l.as_secs_f64() * 1e3,
            peak as f64 / 1024.0
        );
    }
}
