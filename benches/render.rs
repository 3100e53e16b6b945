//! Rendering cost: the full dashboard at 160x48 into a `TestBackend`, with one hour of 1 s history
//! in each of the 20 charted series (3600 points each). Target: under 2 ms a frame. The workload
//! is `gameday::bench::render`, shared with `gameday bench`.
//!
//! `cargo bench --bench render`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use gameday::bench::render::{dashboard_state, draw, terminal};
use gameday::state::Panel;
use gameday::theme::Theme;

fn render(c: &mut Criterion) {
    let mut state = dashboard_state();
    let theme = Theme::built_in("dark").unwrap();
    let mut terminal = terminal();
    c.bench_function("dashboard 160x48, 20 series x 1h at 1s", |b| {
        b.iter(|| draw(&mut terminal, black_box(&state), &theme))
    });
    state.ui.zoom = true;
    state.ui.focus = Panel::Nats;
    c.bench_function("zoomed NATS 160x48", |b| {
        b.iter(|| draw(&mut terminal, black_box(&state), &theme))
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
