//! Webhooks: per webhook, p50/p95/p99 latency over the window, requests, status counts,
//! timeouts, errors and retries, and a latency chart (one bar per time bucket, the slowest
//! request in it, coloured by the p95 thresholds).
//!
//! ```text
//! ▲ telegram ✔  p50 120ms  p95 2.4s  p99 31s
//!   1234 req · 200 1200 · 502 4 · timeouts 30 · errors 4 · retries 12
//!   ▁▁▂▁▁▁▇█▁▁▂▁
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
use crate::ui::widgets::badge::Health;
use crate::ui::widgets::text::put_spans;

use super::{
    CHART_WINDOW_MS, Kpi, PanelCtx, frame_panel, headline, more, not_configured, plan_rows, row,
};

/// Counters shown after the status counts, with the style of a non-zero value.
const COUNTERS: [(&str, Level); 3] = [
    ("timeouts", Level::Warn),
    ("errors", Level::Crit),
    ("retries", Level::Warn),
];
/// Rows a webhook needs for its two text lines.
const TEXT_ROWS: u16 = 2;

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

    let min_rows = if body.height >= TEXT_ROWS * hooks.len() as u16 {
        TEXT_ROWS
    } else {
        1
    };
    let plan = plan_rows(
        hooks.len(),
        body.height,
        min_rows,
        TEXT_ROWS + ctx.max_chart_rows(),
    );
    for (i, hook) in hooks.iter().take(plan.shown).enumerate() {
        let area = Rect::new(
            body.x,
            body.y + i as u16 * plan.height,
            body.width,
            plan.height,
        );
        draw_webhook(buf, area, ctx, hook, i, theme);
    }
    more(
        buf,
        row(body, body.height.saturating_sub(1)),
        plan.hidden,
        ctx,
    );
}

fn draw_webhook(
    buf: &mut ratatui::buffer::Buffer,
    area: Rect,
    ctx: &PanelCtx<'_>,
    hook: &WebhookConfig,
    index: usize,
    theme: &Theme,
) {
    let health = ctx.health(&SourceId::webhook(&hook.name).0, true);
    let stale = health.is_stale();
    let plain = if stale { theme.stale() } else { theme.text() };
    let key = |field: &str| format!("webhook.{}.{field}", hook.name);
    let p95_key = key("latency_ms.p95");

    let mut first = vec![
        ctx.level_badge(&p95_key, stale),
        Span::raw(" "),
        Span::styled(hook.name.clone(), theme.text()),
        Span::raw(" "),
    ];
    first.extend(health.short_spans(theme));
    let [p50, p95, p99] = percentiles(ctx, hook, stale);
    for (label, value, style) in [
        ("p50", p50, plain),
        ("p95", p95, ctx.value_style(&p95_key, stale)),
        ("p99", p99, plain),
    ] {
        first.push(Span::styled(format!("  {label} "), theme.muted()));
        first.push(Span::styled(format::or_dash(value, format::millis), style));
    }
    put_spans(buf, row(area, 0), &first);
    if area.height < TEXT_ROWS {
        return;
    }

    let mut second = vec![Span::raw("  ")];
    // Why it is down comes first, before the (stale) counts.
    if let Health::Down { reason, .. } = &health {
        second.push(Span::styled(format!("({reason}) "), theme.down()));
    }
    second.extend([
        Span::styled(
            format::or_dash(ctx.metric(&key("requests"), stale), format::count),
            plain,
        ),
        Span::styled(" req", theme.muted()),
    ]);
    let status_prefix = key("status.");
    for status_key in ctx.state.metrics.keys_with_prefix(&status_prefix) {
        let code = &status_key[status_prefix.len()..];
        let Some(n) = ctx.metric(status_key, stale) else {
            continue;
        };
        second.push(Span::styled(" · ", theme.muted()));
        second.push(Span::styled(
            format!("{code} "),
            status_style(code, stale, theme),
        ));
        second.push(Span::styled(format::count(n), plain));
    }
    for (field, level) in COUNTERS {
        let value = ctx.metric(&key(field), stale);
        let style = match value {
            Some(v) if v > 0.0 && !stale => theme.level(level),
            _ => plain,
        };
        second.push(Span::styled(format!(" · {field} "), theme.muted()));
        second.push(Span::styled(format::or_dash(value, format::count), style));
    }
    put_spans(buf, row(area, 1), &second);

    let chart = Rect::new(
        area.x + 2,
        area.y + TEXT_ROWS,
        area.width.saturating_sub(2),
        area.height - TEXT_ROWS,
    );
    ctx.spark(&key("latency_ms"), stale, index)
        .threshold(ctx.threshold(&p95_key))
        .axis(format::millis)
        .render(buf, chart, theme);
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
