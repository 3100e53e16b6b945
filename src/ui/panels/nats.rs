//! NATS JetStream: connection state and RTT, then one row per stream/consumer with the lag
//! (pending), ack pending, redelivered, waiting pull requests and stream messages, and a chart of
//! pending per consumer.
//!
//! ```text
//! ✔ up  rtt 1.3ms  nats://127.0.0.1:4222
//!   consumer       pending   ack redel  wait    msgs
//! ✖ TASKS/workers     1450    12     3     1   52.3k ▁▂▃▅▇█
//! ```

use std::collections::BTreeSet;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;

use crate::redact;
use crate::state::Panel;
use crate::ui::format;
use crate::ui::layout;
use crate::ui::widgets::badge;
use crate::ui::widgets::columns::{self, Column};
use crate::ui::widgets::spark::Spark;
use crate::ui::widgets::stale;
use crate::ui::widgets::text::{Part, put_spans};

use super::{Kpi, PanelCtx, below, frame_panel, headline, more, not_configured, plan_rows, row};

const NAME_MIN: u16 = 8;
const NAME_MAX: u16 = 28;

/// A consumer (the lag lives there) or a stream without consumers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    stream: String,
    consumer: Option<String>,
}

impl Item {
    fn name(&self) -> String {
        match &self.consumer {
            Some(c) => format!("{}/{c}", self.stream),
            None => self.stream.clone(),
        }
    }

    fn key(&self, field: &str) -> String {
        match &self.consumer {
            Some(c) => format!("nats.{}.{c}.{field}", self.stream),
            None => format!("nats.{}.{field}", self.stream),
        }
    }

    fn pending_key(&self) -> Option<String> {
        self.consumer.as_ref().map(|_| self.key("pending"))
    }
}

pub fn render(frame: &mut Frame, area: Rect, ctx: &PanelCtx<'_>) {
    let inner = frame_panel(frame, area, ctx, Panel::Nats);
    let buf = frame.buffer_mut();
    let Some(config) = ctx.state.config.nats.as_ref() else {
        not_configured(buf, inner, ctx, "[nats]");
        return;
    };
    let health = ctx.health(crate::sources::SourceId::NATS, true);
    let stale = health.is_stale();
    let theme = ctx.theme;
    let items = items(ctx);

    let total_pending: Option<f64> = items
        .iter()
        .filter_map(|i| i.pending_key())
        .filter_map(|k| ctx.metric(&k, stale))
        .reduce(|a, b| a + b);
    let worst = items
        .iter()
        .filter_map(|i| i.pending_key())
        .map(|k| ctx.level(&k))
        .max()
        .unwrap_or_default();
    let rtt = ctx.metric("nats.rtt_ms", stale);
    let body = headline(
        buf,
        inner,
        ctx,
        &[
            Kpi {
                label: "pending (all consumers)".into(),
                value: format::or_dash(total_pending, format::count),
                style: if stale {
                    theme.stale()
                } else {
                    theme.value(worst)
                },
            },
            Kpi {
                label: "round trip".into(),
                value: format::or_dash(rtt, format::millis),
                style: if stale { theme.stale() } else { theme.text() },
            },
        ],
    );

    let plain = if stale { theme.stale() } else { theme.text() };
    let rtt_part = Part::new(vec![
        Span::styled("  rtt ", theme.muted()),
        Span::styled(format::or_dash(rtt, format::millis), plain),
    ]);
    let status_rows = badge::status_line(
        buf,
        body,
        &health,
        vec![rtt_part],
        &redact::url(&config.url),
        layout::reason_rows(body),
        theme,
    );
    let body = below(body, status_rows);

    if items.is_empty() {
        let note = if config.watch.is_empty() {
            "no streams yet (watching every stream and consumer)"
        } else {
            "no data for the watched streams yet"
        };
        put_spans(buf, row(body, 0), &[Span::styled(note, theme.muted())]);
        return;
    }

    let name_width = items
        .iter()
        .map(|i| i.name().chars().count() as u16)
        .max()
        .unwrap_or(0)
        .clamp(NAME_MIN, NAME_MAX);
    let cols = [
        Column::left("", 1, 0),
        Column::left("consumer", name_width, 0),
        Column::right("pending", 7, 0),
        Column::right("ack", 6, 2),
        Column::right("redel", 6, 3),
        Column::right("wait", 5, 4),
        Column::right("msgs", 7, 1),
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
    let max_rows = layout::max_chart_rows(list, ctx.zoomed);
    let plan = plan_rows(items.len(), list.height, 1, max_rows);
    for (n, item) in items.iter().take(plan.shown).enumerate() {
        let y = list.y + n as u16 * plan.height;
        let line = Rect::new(list.x, y, list.width, 1);
        let count = |field: &str| {
            Span::styled(
                format::or_dash(ctx.metric(&item.key(field), stale), format::count),
                plain,
            )
        };
        let pending = match item.pending_key() {
            Some(k) => Span::styled(
                format::or_dash(ctx.metric(&k, stale), format::count),
                ctx.value_style(&k, stale),
            ),
            None => Span::styled(format::NONE, theme.muted()),
        };
        let messages_key = format!("nats.{}.messages", item.stream);
        let marker = if stale {
            stale::marker(theme)
        } else {
            match item.pending_key() {
                Some(k) => ctx.level_badge(&k, false),
                None => Span::raw(" "),
            }
        };
        let cells = vec![
            vec![marker],
            vec![Span::styled(item.name(), plain)],
            vec![pending],
            vec![count("ack_pending")],
            vec![count("redelivered")],
            vec![count("waiting")],
            vec![Span::styled(
                format::or_dash(ctx.metric(&messages_key, stale), format::count),
                plain,
            )],
        ];
        let chart_x = columns::draw_row(buf, line, &cols, &kept, &cells);
        let mut chart = Rect::new(
            chart_x,
            y,
            list.right().saturating_sub(chart_x),
            plan.height,
        );
        let chart_key = item.pending_key().unwrap_or(messages_key);
        if stale {
            // How old these numbers are, where the chart starts; the chart below, if room.
            let age = stale::age_ms(ctx.state, &chart_key, crate::sources::SourceId::NATS);
            let rows = stale::put_age(buf, chart, age, theme);
            if chart.height > 1 {
                chart = below(chart, rows);
            } else {
                continue;
            }
        }
        Spark::new(ctx.series(&chart_key), ctx.state.now_ms, window_ms)
            .fault_spans(&ctx.state.faults.spans)
            .threshold(ctx.threshold(&chart_key))
            .stale(stale)
            .color(theme.series(n))
            .axis(format::count)
            .render(buf, chart, theme);
    }
    more(
        buf,
        row(list, list.height.saturating_sub(1)),
        plan.hidden,
        ctx,
    );
}

/// Watched pairs from the config and everything the source reported, sorted; a stream gets its
/// own row only when none of its consumers is listed.
fn items(ctx: &PanelCtx<'_>) -> Vec<Item> {
    let mut found = BTreeSet::new();
    if let Some(nats) = &ctx.state.config.nats {
        for w in &nats.watch {
            found.insert(Item {
                stream: w.stream.clone(),
                consumer: w.consumer.clone(),
            });
        }
    }
    for key in ctx.state.metrics.keys_with_prefix("nats.") {
        let rest = &key["nats.".len()..];
        if let Some(pair) = rest.strip_suffix(".pending")
            && let Some((stream, consumer)) = pair.split_once('.')
        {
            found.insert(Item {
                stream: stream.into(),
                consumer: Some(consumer.into()),
            });
        } else if let Some(stream) = rest.strip_suffix(".messages")
            && !stream.contains('.')
        {
            found.insert(Item {
                stream: stream.into(),
                consumer: None,
            });
        }
    }
    let with_consumers: BTreeSet<String> = found
        .iter()
        .filter(|i| i.consumer.is_some())
        .map(|i| i.stream.clone())
        .collect();
    found
        .into_iter()
        .filter(|i| i.consumer.is_some() || !with_consumers.contains(&i.stream))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::metrics::Level;
    use crate::sources::SourceStatus;
    use crate::state::Panel;
    use crate::ui::layout::panel_area;
    use crate::ui::test_support::*;
    use ratatui::layout::Rect;

    crate::ui::test_support::panel_snapshots!(Panel::Nats, "nats");

    #[test]
    fn the_lag_over_its_crit_threshold_is_in_the_crit_colour_with_its_symbol() {
        let state = state();
        assert_eq!(state.level("nats.TASKS.workers.pending"), Level::Crit);
        let theme = theme();
        let terminal = draw(&state, &theme, 80, 24);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, 80, 24), Panel::Nats, false).unwrap();
        let value = find_in(buf, area, "1450").unwrap();
        assert_eq!(buf[value].fg, theme.palette.crit);
        let row_start = (area.x + 1, value.y);
        assert_eq!(buf[row_start].symbol(), "✖");
        assert_eq!(buf[row_start].fg, theme.palette.crit);
        let ok = find_in(buf, area, "TASKS/notifier").unwrap();
        assert_eq!(buf[(area.x + 1, ok.y)].symbol(), "✔");
        assert_eq!(buf[(area.x + 1, ok.y)].fg, theme.palette.ok);
    }

    #[test]
    fn down_says_since_when_and_why_and_dims_the_last_known_values() {
        let mut state = state();
        state.metrics.gap(NOW_MS, "nats.");
        set_source(
            &mut state,
            "nats",
            SourceStatus::down("no answer within 1.5s (frozen or partitioned?)"),
            595_000,
        );
        let text = panel_text(&mut state, Panel::Nats, 160, 48, false);
        let flat = flat(&text);
        assert!(flat.contains("✖ DOWN since 10:09:55  rtt 1.1ms"), "{text}");
        assert!(
            flat.contains("(no answer within 1.5s (frozen or partitioned?))"),
            "{text}"
        );
        assert!(!text.contains('✔'), "no healthy mark on stale rows: {text}");
        insta::assert_snapshot!("nats_down_160x48", text);
        let theme = theme();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, 160, 48), Panel::Nats, false).unwrap();
        let down = find_in(buf, area, "DOWN since").unwrap();
        assert_eq!(buf[down].fg, theme.palette.down);
        let value = find_in(buf, area, "1450").unwrap();
        assert_eq!(buf[value].fg, theme.palette.muted, "stale, not live crit");
    }

    #[test]
    fn not_configured_and_connecting_are_said_plainly() {
        let mut empty = empty_state();
        let text = panel_text(&mut empty, Panel::Nats, 80, 24, false);
        assert!(
            flat(&text).contains("– not configured — add [nats] to gameday.toml"),
            "{text}"
        );
        let mut connecting = connecting_state();
        let text = panel_text(&mut connecting, Panel::Nats, 80, 24, false);
        insta::assert_snapshot!("nats_connecting_80x24", text);
        assert!(text.contains("… connecting…"));
    }
}
