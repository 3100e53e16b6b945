//! Opening a recorded session for replay: read, parse and project a one-hour session of the
//! bench estate to its end (the workload of `gameday bench`'s replay row, which also times an
//! eight-hour one). Target for eight hours: under 2 s and 200 MB.
//!
//! `cargo bench --bench replay`

use criterion::{Criterion, criterion_group, criterion_main};

use gameday::bench::replay::write_session;
use gameday::watch::replay::Replay;

fn replay(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".artifacts/bench")
        .join(format!("replay-criterion-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_session(&dir, 1).expect("a one-hour session");
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.bench_function("open a 1 h session and project it to the end", |b| {
        b.iter(|| {
            let mut replay = Replay::open(&dir, "dark".into()).expect("it opens");
            replay.seek(u64::MAX);
            replay
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, replay);
criterion_main!(benches);
