//! Probes: per HTTP probe, ok/fail, the last status, latency with its chart, and the success rate
//! over the chart window.
//!
//! ```text
//!   probe  state        last latency   ok% last 5m
//! ✔ api    ✔ ok          202    35ms  100% ▁▁▂▁▁▃▁
//!   health ✖ DOWN        200   3.0ms  100% since 10:08:40 (connection refused)
//! ```

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;

use crate::metrics::{Level, Series};
use crate::sources::SourceId;
use crate::state::Panel;
use crate::ui::format;
use crate::ui::widgets::badge::{self, Health};
use crate::ui::widgets::columns::{self, Column};
use crate::ui::widgets::text::put_wrapped;

use super::{
    CHART_WINDOW_MS, Kpi, PanelCtx, below, frame_panel, headline, more, not_configured, plan_rows,
    row,
};

const NAME_MIN: u16 = 5;
const NAME_MAX: u16 = 20;
const STATE_WIDTH: u16 = 12;

pub fn render(frame: &mut Frame, area: Rect, ctx: &PanelCtx<'_>) {
    let inner = frame_panel(frame, area, ctx, Panel::Probes);
    let buf = frame.buffer_mut();
    let probes = &ctx.state.config.probes;
    if probes.is_empty() {
        not_configured(buf, inner, ctx, "[[probe]] entries");
        return;
    }
    let theme = ctx.theme;
    let kpis: Vec<Kpi> = probes
        .iter()
        .map(|p| {
            let stale = ctx.health(&SourceId::probe(&p.name).0, true).is_stale();
            let rate = success_rate(ctx, &p.name);
            Kpi {
                label: format!("{} success", p.name),
                value: format::or_dash(rate, format::percent),
                style: if stale {
                    theme.stale()
                } else {
                    theme.value(rate_level(rate))
                },
            }
        })
        .collect();
    let body = headline(buf, inner, ctx, &kpis);

    let name_width = probes
        .iter()
        .map(|p| p.name.chars().count() as u16)
        .max()
        .unwrap_or(0)
        .clamp(NAME_MIN, NAME_MAX);
    let cols = [
        Column::left("", 1, 0),
        Column::left("probe", name_width, 0),
        Column::left("state", STATE_WIDTH, 0),
        Column::right("last", 4, 2),
        Column::right("latency", 7, 0),
        Column::right("ok%", 5, 1),
    ];
    let kept = columns::fit(&cols, body.width, super::MIN_CHART_WIDTH);
    columns::draw_header(buf, row(body, 0), &cols, &kept, theme.muted(), "last 5m");

    let list = below(body, 1);
    let plan = plan_rows(probes.len(), list.height, 1, ctx.max_chart_rows());
    for (i, probe) in probes.iter().take(plan.shown).enumerate() {
        let y = list.y + i as u16 * plan.height;
        let health = ctx.health(&SourceId::probe(&probe.name).0, true);
        let stale = health.is_stale();
        let plain = if stale { theme.stale() } else { theme.text() };
        let key = |field: &str| format!("probe.{}.{field}", probe.name);
        let latency_key = key("latency_ms");
        let state = match (&health, ctx.metric(&key("ok"), false)) {
            (Health::Up, Some(ok)) if ok >= 1.0 => vec![Span::styled(
                format!("{} ok", badge::OK),
                theme.level(Level::Ok),
            )],
            (Health::Up, Some(_)) => vec![Span::styled(
                format!("{} fail", badge::CRIT),
                theme.level(Level::Crit),
            )],
            (Health::Up, None) => vec![Span::styled("no data", theme.muted())],
            (Health::Down { .. }, _) => {
                vec![Span::styled(format!("{} DOWN", badge::DOWN), theme.down())]
            }
            (Health::Connecting, _) => vec![Span::styled(
                format!("{} connecting", badge::CONNECTING),
                theme.muted(),
            )],
            (Health::NotConfigured, _) => Vec::new(),
        };
        let rate = success_rate(ctx, &probe.name);
        let cells = vec![
            vec![ctx.level_badge(&latency_key, stale)],
            vec![Span::styled(probe.name.clone(), theme.text())],
            state,
            vec![Span::styled(
                last_status(ctx, &key("status.")).unwrap_or(format::NONE.into()),
                plain,
            )],
            vec![Span::styled(
                format::or_dash(ctx.metric(&latency_key, stale), format::millis),
                ctx.value_style(&latency_key, stale),
            )],
            vec![Span::styled(
                format::or_dash(rate, format::percent),
                if stale {
                    theme.stale()
                } else {
                    theme.value(rate_level(rate))
                },
            )],
        ];
        let line = Rect::new(list.x, y, list.width, 1);
        let chart_x = columns::draw_row(buf, line, &cols, &kept, &cells);
        let mut chart = Rect::new(
            chart_x,
            y,
            list.right().saturating_sub(chart_x),
            plan.height,
        );
        // A down probe says why where its chart starts; the stale chart goes below, if room.
        if let Health::Down { since, reason } = &health {
            let rows = put_wrapped(
                buf,
                chart,
                &[Span::styled(
                    format!("since {} ({reason})", format::clock(*since)),
                    theme.down(),
                )],
                plan.height.saturating_sub(1).max(1),
            );
            chart = below(chart, rows);
        }
        ctx.spark(&latency_key, stale, i)
            .axis(format::millis)
            .render(buf, chart, theme);
    }
    more(
        buf,
        row(list, list.height.saturating_sub(1)),
        plan.hidden,
        ctx,
    );
}

/// Share of `ok` samples in the chart window.
fn success_rate(ctx: &PanelCtx<'_>, probe: &str) -> Option<f64> {
    let series = ctx.series(&format!("probe.{probe}.ok"))?;
    let now = ctx.state.now_ms;
    let (sum, n) = series
        .values_between(now.saturating_sub(CHART_WINDOW_MS), now + 1)
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Anything short of every probe succeeding is worth a look; under 90% is trouble.
fn rate_level(rate: Option<f64>) -> Level {
    match rate {
        Some(r) if r < 0.9 => Level::Crit,
        Some(r) if r < 1.0 => Level::Warn,
        _ => Level::Ok,
    }
}

/// The status whose cumulative count moved last.
fn last_status(ctx: &PanelCtx<'_>, prefix: &str) -> Option<String> {
    ctx.state
        .metrics
        .keys_with_prefix(prefix)
        .filter_map(|key| Some((last_change(ctx.series(key)?)?, &key[prefix.len()..])))
        .max_by_key(|(at, _)| *at)
        .map(|(_, code)| code.to_string())
}

/// When a counter last changed (or first appeared).
fn last_change(series: &Series) -> Option<u64> {
    let mut later: Option<(u64, f64)> = None;
    for p in series.points().rev() {
        let Some(v) = p.value else { continue };
        if let Some((at, after)) = later
            && after != v
        {
            return Some(at);
        }
        later = Some((p.at_ms, v));
    }
    later.map(|(at, _)| at)
}

#[cfg(test)]
mod tests {
    use crate::state::Panel;
    use crate::ui::layout::panel_area;
    use crate::ui::test_support::*;
    use ratatui::layout::Rect;

    crate::ui::test_support::panel_snapshots!(Panel::Probes, "probes");

    #[test]
    fn ok_fail_and_down_each_have_a_symbol_and_a_colour() {
        let mut state = state();
        let theme = theme();
        let screen = Rect::new(0, 0, 160, 48);
        let area = panel_area(screen, Panel::Probes, false).unwrap();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let ok = find_in(buf, area, "✔ ok").unwrap();
        assert_eq!(buf[ok].fg, theme.palette.ok);
        let down = find_in(buf, area, "✖ DOWN").unwrap();
        assert_eq!(buf[down].fg, theme.palette.down);
        let latency = find_in(buf, area, "240ms").unwrap();
        assert_eq!(buf[latency].fg, theme.palette.warn, "over warn_ms = 200");
        assert_eq!(
            find_in(buf, area, "202").map(|p| p.y),
            Some(latency.y),
            "last status"
        );

        state.metrics.record(NOW_MS, "probe.api.ok", 0.0);
        state.metrics.record(NOW_MS, "probe.api.status.503", 4.0);
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let fail = find_in(buf, area, "✖ fail").unwrap();
        assert_eq!(buf[fail].fg, theme.palette.crit);
        assert_eq!(
            find_in(buf, area, "503").map(|p| p.y),
            Some(fail.y),
            "last status"
        );
    }

    #[test]
    fn not_configured_is_said_plainly() {
        let mut empty = empty_state();
        let text = panel_text(&mut empty, Panel::Probes, 80, 24, false);
        assert!(
            flat(&text).contains("not configured — add [[probe]] entries to gameday.toml"),
            "{text}"
        );
    }
}
