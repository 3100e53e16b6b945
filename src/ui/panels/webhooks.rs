//! Webhooks: per webhook, p50/p95/p99 latency over the window, requests, status counts,
//! timeouts, errors and retries, and a latency chart (one bar per time bucket, the slowest
//! request in it, coloured by the p95 thresholds).
//!
//! ```text
//! ▲ telegram ✔  p50 120ms  p95 2.4s  p99 31s
//!   1234 req · 200 1200 · 502 4 · timeouts 30 · errors 4 · retries 12
//!   ▁▁▂▁▁▁▇█▁▁▂▁
//! ◌ slack ✖ DOWN 10:08:12  p50 80ms  p95 95ms  p99 99ms
//!   (upstream 127.0.0.1:9100: connection refused) · last 1m50s ago
//!   210 req · 200 210 · tmout 0 · err 0 · retry 0
//! ```

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Span;

use crate::config::WebhookConfig;
use crate::metrics::{Level, Stats};
use crate::sources::SourceId;
use crate::state::Panel;
use crate::theme::Theme;
use crate::ui::format;
use crate::ui::layout;
use crate::ui::widgets::badge::{self, Health};
use crate::ui::widgets::spark::Spark;
use crate::ui::widgets::stale;
use crate::ui::widgets::text::{Part, put_parts, put_wrapped, wrapped_rows};

use super::{CHART_WINDOW_MS, Kpi, PanelCtx, frame_panel, headline, more, not_configured, row};

/// Counters shown after the status counts: their short labels, the style of a non-zero value,
/// and how early they are left out of a narrow row (after the status counts; 0 never).
const COUNTERS: [(&str, &str, Level, u8); 3] = [
    ("timeouts", "tmout", Level::Warn, 0),
    ("errors", "err", Level::Crit, 0),
    ("retries", "retry", Level::Warn, 1),
];
/// Rows a webhook needs for its two text lines.
const TEXT_ROWS: u16 = 2;
/// Rows the reason of a down webhook may wrap over.
const REASON_ROWS: u16 = 2;

pub fn render(frame: &mut Frame, area: Rect, ctx: &PanelCtx<'_>) {
    let inner = frame_panel(frame, area, ctx, Panel::Webhooks);
    let buf = frame.buffer_mut();
    let hooks = &ctx.state.config.webhooks;
    if hooks.is_empty() {
        not_configured(buf, inner, ctx, "[[webhook]] entries");
        return;
    }
    let theme = ctx.theme;
    let kpis: Vec<Kpi> = hooks
        .iter()
        .map(|hook| {
            let stale = ctx
                .health(&SourceId::webhook(&hook.name).0, true)
                .is_stale();
            let p95_key = format!("webhook.{}.latency_ms.p95", hook.name);
            Kpi {
                label: format!("p95 {}", hook.name),
                value: format::or_dash(percentiles(ctx, hook, stale)[1], format::millis),
                style: ctx.value_style(&p95_key, stale),
            }
        })
        .collect();
    let body = headline(buf, inner, ctx, &kpis);

    // Rows of text per webhook: its numbers and counts, and a line for why it is down.
    let text_rows: Vec<u16> = hooks
        .iter()
        .map(|hook| {
            TEXT_ROWS
                + down_line(ctx, hook).map_or(0, |spans| {
                    wrapped_rows(&spans, body.width.saturating_sub(2), REASON_ROWS)
                })
        })
        .collect();
    let max_chart = layout::max_chart_rows(body, ctx.zoomed);
    let heights = plan_heights(&text_rows, body.height, max_chart);
    let mut y = body.y;
    for (i, (hook, height)) in hooks.iter().zip(&heights).enumerate() {
        let area = Rect::new(body.x, y, body.width, *height);
        draw_webhook(buf, area, ctx, hook, i, theme);
        y += height;
    }
    more(
        buf,
        row(body, body.height.saturating_sub(1)),
        hooks.len() - heights.len(),
        ctx,
    );
}

/// Rows per webhook: its text rows when they all fit (only the first otherwise), then spare rows
/// to the charts (up to `max_chart` each). When even one row each does not fit, the last row is
/// kept for "… N more".
fn plan_heights(text_rows: &[u16], available: u16, max_chart: u16) -> Vec<u16> {
    let full: u16 = text_rows.iter().sum();
    if full > available {
        let n = text_rows.len() as u16;
        let shown = if n <= available {
            n
        } else {
            available.saturating_sub(1)
        };
        return vec![1; shown as usize];
    }
    let mut heights = text_rows.to_vec();
    let mut spare = available - full;
    while spare > 0 {
        let mut grew = false;
        for (h, t) in heights.iter_mut().zip(text_rows) {
            if spare > 0 && *h - t < max_chart {
                *h += 1;
                spare -= 1;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    heights
}

fn draw_webhook(
    buf: &mut ratatui::buffer::Buffer,
    area: Rect,
    ctx: &PanelCtx<'_>,
    hook: &WebhookConfig,
    index: usize,
    theme: &Theme,
) {
    let source = SourceId::webhook(&hook.name).0;
    let health = ctx.health(&source, true);
    let stale = health.is_stale();
    let plain = if stale { theme.stale() } else { theme.text() };
    let key = |field: &str| format!("webhook.{}.{field}", hook.name);
    let p95_key = key("latency_ms.p95");

    let marker = if stale {
        stale::marker(theme)
    } else {
        ctx.level_badge(&p95_key, false)
    };
    let name = vec![
        marker,
        Span::raw(" "),
        Span::styled(hook.name.clone(), plain),
        Span::raw(" "),
    ];
    let mut head = Part::new(
        name.iter()
            .cloned()
            .chain(health.short_spans(theme))
            .collect(),
    );
    if let Health::Down { .. } = &health {
        head = head.or(name
            .into_iter()
            .chain([Span::styled(format!("{} DOWN", badge::DOWN), theme.down())])
            .collect());
    }
    let mut first = vec![head];
    let [p50, p95, p99] = percentiles(ctx, hook, stale);
    // p95 carries the threshold and stays; p50 goes first, then p99, when even the short forms
    // do not fit.
    for (label, value, style, drop) in [
        ("p50", p50, plain, 2),
        ("p95", p95, ctx.value_style(&p95_key, stale), 0),
        ("p99", p99, plain, 1),
    ] {
        let number = format::or_dash(value, format::millis);
        first.push(
            Part::new(vec![
                Span::styled(format!("  {label} "), theme.muted()),
                Span::styled(number.clone(), style),
            ])
            .or(vec![
                Span::styled(format!(" {label} "), theme.muted()),
                Span::styled(number, style),
            ])
            .drop(drop),
        );
    }
    put_parts(buf, row(area, 0), &first);
    let mut next = 1;
    if let Some(spans) = down_line(ctx, hook) {
        // Why it is down, and how old the numbers are, on rows of their own.
        let rows = wrapped_rows(&spans, area.width.saturating_sub(2), REASON_ROWS);
        if area.height < next + rows + 1 {
            return;
        }
        let reason = Rect::new(
            area.x + 2,
            area.y + next,
            area.width.saturating_sub(2),
            rows,
        );
        next += put_wrapped(buf, reason, &spans, rows);
    }
    if area.height <= next {
        return;
    }

    let mut second = vec![Part::new(vec![
        Span::raw("  "),
        Span::styled(
            format::or_dash(ctx.metric(&key("requests"), stale), format::count),
            plain,
        ),
        Span::styled(" req", theme.muted()),
    ])];
    let status_prefix = key("status.");
    for status_key in ctx.state.metrics.keys_with_prefix(&status_prefix) {
        let code = &status_key[status_prefix.len()..];
        let Some(n) = ctx.metric(status_key, stale) else {
            continue;
        };
        // In a narrow row 2xx go first, then the failures (timeouts and errors say it too).
        let drop = if code.starts_with('2') { 3 } else { 2 };
        second.push(
            Part::new(vec![
                Span::styled(" · ", theme.muted()),
                Span::styled(format!("{code} "), status_style(code, stale, theme)),
                Span::styled(format::count(n), plain),
            ])
            .drop(drop),
        );
    }
    for (field, short, level, drop) in COUNTERS {
        let value = ctx.metric(&key(field), stale);
        let style = match value {
            Some(v) if v > 0.0 && !stale => theme.level(level),
            _ => plain,
        };
        let number = format::or_dash(value, format::count);
        second.push(
            Part::new(vec![
                Span::styled(format!(" · {field} "), theme.muted()),
                Span::styled(number.clone(), style),
            ])
            .or(vec![
                Span::styled(format!(" · {short} "), theme.muted()),
                Span::styled(number, style),
            ])
            .drop(drop),
        );
    }
    put_parts(buf, row(area, next), &second);
    next += 1;
    if area.height <= next {
        return;
    }

    let chart = Rect::new(
        area.x + 2,
        area.y + next,
        area.width.saturating_sub(2),
        area.height - next,
    );
    Spark::new(
        ctx.series(&key("latency_ms")),
        ctx.state.now_ms,
        layout::chart_window_ms(chart.width),
    )
    .fault_spans(&ctx.state.faults.spans)
    .threshold(ctx.threshold(&p95_key))
    .stale(stale)
    .color(theme.series(index))
    .axis(format::millis)
    .render(buf, chart, theme);
}

/// `(upstream …: connection refused) · last 1m50s ago` for a webhook that is down.
fn down_line(ctx: &PanelCtx<'_>, hook: &WebhookConfig) -> Option<Vec<Span<'static>>> {
    let source = SourceId::webhook(&hook.name).0;
    let Health::Down { reason, .. } = ctx.health(&source, true) else {
        return None;
    };
    let age = stale::age_ms(
        ctx.state,
        &format!("webhook.{}.latency_ms", hook.name),
        &source,
    );
    Some(vec![
        Span::styled(format!("({reason})"), ctx.theme.down()),
        Span::styled(
            format!(" · last value {}", format::ago(age)),
            ctx.theme.stale(),
        ),
    ])
}

/// p50/p95/p99 as the source computed them, or from the raw latencies of the window when it has
/// not yet.
fn percentiles(ctx: &PanelCtx<'_>, hook: &WebhookConfig, stale: bool) -> [Option<f64>; 3] {
    let key = |p: &str| format!("webhook.{}.latency_ms.{p}", hook.name);
    let given = ["p50", "p95", "p99"].map(|p| ctx.metric(&key(p), stale));
    if given.iter().any(Option::is_some) {
        return given;
    }
    let raw = ctx.series(&format!("webhook.{}.latency_ms", hook.name));
    let now = ctx.state.now_ms;
    let stats: Option<Stats> =
        raw.and_then(|s| s.stats_between(now.saturating_sub(CHART_WINDOW_MS), now + 1));
    match stats {
        Some(s) => [Some(s.p50), Some(s.p95), Some(s.p99)],
        None => [None; 3],
    }
}

/// 5xx are failures, 4xx are warnings; the code itself says which, the colour repeats it.
fn status_style(code: &str, stale: bool, theme: &Theme) -> Style {
    if stale {
        return theme.stale();
    }
    match code.chars().next() {
        Some('5') => theme.level(Level::Crit),
        Some('4') => theme.level(Level::Warn),
        _ => theme.muted(),
    }
}

#[cfg(test)]
mod tests {
    use crate::state::Panel;
    use crate::ui::layout::panel_area;
    use crate::ui::test_support::*;
    use ratatui::layout::Rect;

    crate::ui::test_support::panel_snapshots!(Panel::Webhooks, "webhooks");

    #[test]
    fn p95_over_warn_is_warned_and_a_down_webhook_is_dimmed_with_its_reason() {
        let state = state();
        let theme = theme();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, 160, 48), Panel::Webhooks, false).unwrap();
        let p95 = find_in(buf, area, "2.4s").unwrap();
        assert_eq!(buf[p95].fg, theme.palette.warn);
        let down = find_in(buf, area, "✖ DOWN 10:08:12").unwrap();
        assert_eq!(buf[down].fg, theme.palette.down);
        let reason = find_in(buf, area, "(upstream 127.0.0.1:9100: connection refused)").unwrap();
        assert_eq!(buf[reason].fg, theme.palette.down);
        assert_eq!(reason.y, down.y + 1, "the reason leads the next line");
        let stale = find_in(buf, area, "95ms").unwrap();
        assert_eq!(buf[stale].fg, theme.palette.muted);
        let failures = find_in(buf, area, "502 ").unwrap();
        assert_eq!(buf[failures].fg, theme.palette.crit);
    }

    #[test]
    fn percentiles_come_from_raw_latencies_until_the_source_computes_them() {
        let mut state = connecting_state();
        crate::ui::test_support::set_source(
            &mut state,
            "webhook.telegram",
            crate::sources::SourceStatus::Up,
            0,
        );
        for (i, v) in [100.0, 200.0, 300.0, 400.0, 5000.0].into_iter().enumerate() {
            state
                .metrics
                .record(i as u64 * 100, "webhook.telegram.latency_ms", v);
        }
        let text = panel_text(&mut state, Panel::Webhooks, 160, 48, false);
        assert!(text.contains("p50 300ms  p95 5.0s  p99 5.0s"), "{text}");
    }

    #[test]
    fn not_configured_is_said_plainly() {
        let mut empty = empty_state();
        let text = panel_text(&mut empty, Panel::Webhooks, 80, 24, false);
        assert!(
            flat(&text).contains("not configured — add [[webhook]] entries to gameday.toml"),
            "{text}"
        );
    }
}
