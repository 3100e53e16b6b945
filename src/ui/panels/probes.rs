//! Probes: per HTTP probe, ok/fail, the last status, latency with its chart, and the success rate
//! over the chart window.
//!
//! ```text
//!   probe  state        last latency   ok% last 5m
//! ✔ api    ✔ ok          202    35ms  100% ▁▁▂▁▁▃▁
//! ◌ health ✖ DOWN        200   3.0ms  100% ▅▅▅▅···
//!   since 10:08:40 (connection refused) · last value 1m20s ago
//! ```

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;

use crate::metrics::{Level, Series};
use crate::sources::SourceId;
use crate::state::Panel;
use crate::ui::format;
use crate::ui::layout;
use crate::ui::widgets::badge::{self, Health};
use crate::ui::widgets::columns::{self, Column};
use crate::ui::widgets::spark::Spark;
use crate::ui::widgets::stale;
use crate::ui::widgets::text::{put_wrapped, wrapped_rows};

use super::{
    CHART_WINDOW_MS, Kpi, PanelCtx, below, frame_panel, headline, more, not_configured, row,
};

const NAME_MIN: u16 = 5;
const NAME_MAX: u16 = 20;
const STATE_WIDTH: u16 = 12;
/// A down probe's reason lines sit under its name.
const REASON_INDENT: u16 = 2;

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
    let chart_width = body.width.saturating_sub(columns::used_width(&cols, &kept));
    let window_ms = layout::chart_window_ms(chart_width);
    columns::draw_header(
        buf,
        row(body, 0),
        &cols,
        &kept,
        theme.muted(),
        &format!("last {}", format::span(window_ms)),
    );

    let list = below(body, 1);
    // A down probe says why on its own line(s) under its row.
    let reasons: Vec<Option<Vec<Span<'static>>>> = probes
        .iter()
        .map(|probe| down_line(ctx, &probe.name))
        .collect();
    // More rows when the panel has them, so the reason and the age of the numbers can be read.
    let reason_max = match list.height {
        12.. => 3,
        8.. => 2,
        _ => 1,
    }
    .max(layout::reason_rows(list));
    let reason_width = list.width.saturating_sub(REASON_INDENT);
    let reason_rows: Vec<u16> = reasons
        .iter()
        .map(|r| {
            r.as_ref()
                .map_or(0, |spans| wrapped_rows(spans, reason_width, reason_max))
        })
        .collect();
    let heights = plan_heights(
        &reason_rows,
        list.height,
        layout::max_chart_rows(list, ctx.zoomed),
    );
    let mut y = list.y;
    for (i, (probe, height)) in probes.iter().zip(&heights).enumerate() {
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
        let marker = if stale {
            stale::marker(theme)
        } else {
            ctx.level_badge(&latency_key, false)
        };
        let cells = vec![
            vec![marker],
            vec![Span::styled(probe.name.clone(), plain)],
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
        let chart = Rect::new(
            chart_x,
            y,
            list.right().saturating_sub(chart_x),
            height - reason_rows[i],
        );
        Spark::new(ctx.series(&latency_key), ctx.state.now_ms, window_ms)
            .fault_spans(&ctx.state.faults.spans)
            .threshold(ctx.threshold(&latency_key))
            .stale(stale)
            .color(theme.series(i))
            .axis(format::millis)
            .render(buf, chart, theme);
        if let Some(spans) = &reasons[i] {
            let area = Rect::new(
                list.x + REASON_INDENT,
                chart.bottom(),
                reason_width,
                reason_rows[i],
            );
            put_wrapped(buf, area, spans, reason_rows[i]);
        }
        y += height;
    }
    more(
        buf,
        row(list, list.height.saturating_sub(1)),
        probes.len() - heights.len(),
        ctx,
    );
}

/// `  ✖ since 10:08:40 (connection refused) · last 1m20s ago` for a probe that is down.
fn down_line(ctx: &PanelCtx<'_>, probe: &str) -> Option<Vec<Span<'static>>> {
    let source = SourceId::probe(probe).0;
    let Health::Down { since, reason } = ctx.health(&source, true) else {
        return None;
    };
    let age = stale::age_ms(ctx.state, &format!("probe.{probe}.latency_ms"), &source);
    Some(vec![
        Span::styled(
            format!("since {} ({reason})", format::clock(since)),
            ctx.theme.down(),
        ),
        Span::styled(
            format!(" · last value {}", format::ago(age)),
            ctx.theme.stale(),
        ),
    ])
}

/// Rows per probe: one for its row and the rows of its reason, then spare rows to the charts
/// (up to `max_chart` each). When the probes do not fit, the last row is kept for "… N more".
fn plan_heights(reason_rows: &[u16], available: u16, max_chart: u16) -> Vec<u16> {
    let needed: Vec<u16> = reason_rows.iter().map(|r| 1 + r).collect();
    if needed.iter().sum::<u16>() > available {
        let mut left = available.saturating_sub(1);
        return needed
            .into_iter()
            .take_while(|n| {
                let fits = *n <= left;
                left = left.saturating_sub(*n);
                fits
            })
            .collect();
    }
    let mut heights = needed;
    let mut spare = available - heights.iter().sum::<u16>();
    while spare > 0 {
        let mut grew = false;
        for (h, r) in heights.iter_mut().zip(reason_rows) {
            if spare > 0 && *h - r < max_chart {
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
    fn a_down_probe_says_down_and_why_on_its_own_line_with_stale_numbers() {
        let mut state = state();
        let theme = theme();
        for (w, h) in [(160, 48), LARGE] {
            let text = panel_text(&mut state, Panel::Probes, w, h, false);
            insta::assert_snapshot!(format!("probes_down_{w}x{h}"), text);
            let terminal = draw(&state, &theme, w, h);
            let buf = terminal.backend().buffer();
            let area = panel_area(Rect::new(0, 0, w, h), Panel::Probes, false).unwrap();
            let name = find_in(buf, area, "health").unwrap();
            assert_eq!(buf[(area.x + 1, name.y)].symbol(), "◌", "no healthy mark");
            assert_eq!(buf[name].fg, theme.palette.muted);
            let down = find_in(buf, area, "✖ DOWN").unwrap();
            assert_eq!(down.y, name.y);
            let latency = find_in(buf, area, "3.0ms").unwrap();
            assert_eq!(buf[latency].fg, theme.palette.muted, "stale");
            let why = find_in(buf, area, "since 10:08:40 (connection refused").unwrap();
            assert!(why.y > name.y, "the reason has its own line");
            assert_eq!(why.x, area.x + 3, "not in the chart column");
            assert_eq!(buf[why].fg, theme.palette.down);
            assert!(flat(&text).contains("· last value 1m21s ago"), "{text}");
        }
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
