//! The panels: one file each, each drawing its own bordered block from the state. This file holds
//! what they share: the context, the honest source state, the panel frame, row planning and the
//! big-number headline of the zoomed view.

pub mod faults;
pub mod footer;
pub mod header;
pub mod nats;
pub mod position;
pub mod postgres;
pub mod probes;
pub mod timeline;
pub mod webhooks;

use std::borrow::Cow;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType};

use crate::metrics::{Level, Series, Threshold};
use crate::sources::SourceStatus;
use crate::state::{AppState, Panel};
use crate::theme::Theme;
use crate::ui::widgets::badge::{self, Health};
use crate::ui::widgets::big_number;
use crate::ui::widgets::spark::Spark;
use crate::ui::widgets::text::{put_spans, put_wrapped};

/// How much history a chart shows.
pub const CHART_WINDOW_MS: u64 = 5 * 60_000;
/// A chart gets this many rows at most, unless zoomed.
pub const MAX_CHART_ROWS: u16 = 6;
/// … and this many when zoomed.
pub const MAX_CHART_ROWS_ZOOMED: u16 = 16;
/// Charts narrower than this are not worth drawing.
pub const MIN_CHART_WIDTH: u16 = 8;
/// Rows a down source's status may take to show its reason.
pub const DOWN_STATUS_ROWS: u16 = 2;
/// The zoomed view shows big numbers when the panel has this many inner rows.
pub const HEADLINE_MIN_HEIGHT: u16 = 16;
const HEADLINE_HEIGHT: u16 = 1 + big_number::HEIGHT + 1;
const HEADLINE_SPACING: u16 = 4;

/// Everything a panel needs for one frame.
#[derive(Clone, Copy)]
pub struct PanelCtx<'a> {
    pub state: &'a AppState,
    pub theme: &'a Theme,
    pub focused: bool,
    pub zoomed: bool,
}

/// Draws one panel into `area`.
pub fn render(frame: &mut Frame, area: Rect, panel: Panel, ctx: &PanelCtx<'_>) {
    match panel {
        Panel::Nats => nats::render(frame, area, ctx),
        Panel::Postgres => postgres::render(frame, area, ctx),
        Panel::Webhooks => webhooks::render(frame, area, ctx),
        Panel::Probes => probes::render(frame, area, ctx),
        Panel::Faults => faults::render(frame, area, ctx),
        Panel::Timeline => timeline::render(frame, area, ctx),
    }
}

impl<'a> PanelCtx<'a> {
    /// What can honestly be said about a source.
    pub fn health(&self, source: &str, configured: bool) -> Health<'a> {
        if !configured {
            return Health::NotConfigured;
        }
        match self.state.source(source) {
            None => Health::Connecting,
            Some(s) => match &s.status {
                SourceStatus::Connecting => Health::Connecting,
                SourceStatus::Up => Health::Up,
                SourceStatus::Down { reason } => Health::Down {
                    since: s.since,
                    reason: self.redact(reason),
                },
            },
        }
    }

    /// Any text that came from outside (reasons, errors), with every known secret masked.
    pub fn redact(&self, text: &'a str) -> Cow<'a, str> {
        self.state.config.redactor().text(text)
    }

    pub fn series(&self, key: &str) -> Option<&'a Series> {
        self.state.metrics.get(key)
    }

    /// The live value, or the last known one when `stale`.
    pub fn metric(&self, key: &str, stale: bool) -> Option<f64> {
        let series = self.series(key)?;
        if stale {
            series.last_known()
        } else {
            series.current()
        }
    }

    pub fn threshold(&self, key: &str) -> Option<&'a Threshold> {
        self.state.thresholds.get(key)
    }

    pub fn level(&self, key: &str) -> Level {
        self.state.level(key)
    }

    /// How a value of `key` is drawn: by its level when live, muted when stale.
    pub fn value_style(&self, key: &str, stale: bool) -> Style {
        if stale {
            self.theme.stale()
        } else {
            self.theme.value(self.level(key))
        }
    }

    /// The level symbol of a key with a threshold (blank without one, or without data).
    pub fn level_badge(&self, key: &str, stale: bool) -> Span<'static> {
        let has_data = self.series(key).and_then(Series::last_known).is_some();
        if self.threshold(key).is_none() || !has_data {
            return Span::raw(" ");
        }
        let level = self.level(key);
        if stale {
            Span::styled(badge::level_symbol(level), self.theme.stale())
        } else {
            badge::level(level, self.theme)
        }
    }

    /// A chart of `key` over the standard window, shaded by fault spans and coloured by its
    /// threshold.
    pub fn spark(&self, key: &str, stale: bool, series_index: usize) -> Spark<'a> {
        Spark::new(self.series(key), self.state.now_ms, CHART_WINDOW_MS)
            .fault_spans(&self.state.faults.spans)
            .threshold(self.threshold(key))
            .stale(stale)
            .color(self.theme.series(series_index))
    }

    pub fn max_chart_rows(&self) -> u16 {
        if self.zoomed {
            MAX_CHART_ROWS_ZOOMED
        } else {
            MAX_CHART_ROWS
        }
    }

    /// The file name of the config, for "add [nats] to gameday.toml".
    pub fn config_name(&self) -> String {
        self.state
            .config
            .file
            .file_name()
            .map_or_else(|| "the config".into(), |n| n.to_string_lossy().into_owned())
    }
}

/// Draws the panel's border and title; returns the inside.
pub fn frame_panel(frame: &mut Frame, area: Rect, ctx: &PanelCtx<'_>, panel: Panel) -> Rect {
    let theme = ctx.theme;
    let title_style = if ctx.focused {
        theme.accent().add_modifier(Modifier::BOLD)
    } else {
        theme.text()
    };
    let mut title = vec![Span::styled(format!(" {} ", panel.title()), title_style)];
    if ctx.zoomed {
        title.push(Span::styled("zoomed · esc ", theme.muted()));
    }
    // Focus is shown by the border's weight as well as its colour.
    let block = Block::bordered()
        .border_type(if ctx.focused {
            BorderType::Thick
        } else {
            BorderType::Rounded
        })
        .border_style(theme.border(ctx.focused))
        .title(Line::from(title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}

/// Row `offset` of `area` as a one-row rect (zero height when `area` has no such row).
pub fn row(area: Rect, offset: u16) -> Rect {
    if offset >= area.height {
        return Rect::new(area.x, area.y, area.width, 0);
    }
    Rect::new(area.x, area.y + offset, area.width, 1)
}

/// `area` without its first `rows` rows.
pub fn below(area: Rect, rows: u16) -> Rect {
    let rows = rows.min(area.height);
    Rect::new(area.x, area.y + rows, area.width, area.height - rows)
}

/// "not configured — add [nats] to gameday.toml".
pub fn not_configured(buf: &mut Buffer, inner: Rect, ctx: &PanelCtx<'_>, section: &str) {
    let spans = vec![Span::styled(
        format!(
            "{} not configured — add {section} to {}",
            badge::NOT_CONFIGURED,
            ctx.config_name()
        ),
        ctx.theme.muted(),
    )];
    put_wrapped(buf, inner, &spans, inner.height);
}

/// A source's status line: one row while it is fine, up to `DOWN_STATUS_ROWS` when it is down so
/// the reason can be read. Returns the rows used.
pub fn status_line(buf: &mut Buffer, area: Rect, spans: &[Span<'_>], down: bool) -> u16 {
    let rows = if down { DOWN_STATUS_ROWS } else { 1 };
    put_wrapped(buf, area, spans, rows)
}

/// "… 3 more (z zooms)".
pub fn more(buf: &mut Buffer, row: Rect, hidden: usize, ctx: &PanelCtx<'_>) {
    if hidden == 0 {
        return;
    }
    let hint = if ctx.zoomed { "" } else { " (z zooms)" };
    put_spans(
        buf,
        row,
        &[Span::styled(
            format!("… {hidden} more{hint}"),
            ctx.theme.muted(),
        )],
    );
}

/// How many items fit and how tall each is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPlan {
    pub shown: usize,
    /// Rows per item.
    pub height: u16,
    /// Items left out (a "… N more" row is reserved for them).
    pub hidden: usize,
}

/// Items of at least `min_each` rows in `available` rows, growing up to `max_each`.
pub fn plan_rows(items: usize, available: u16, min_each: u16, max_each: u16) -> RowPlan {
    let min_each = min_each.max(1);
    let fit = (available / min_each) as usize;
    if items == 0 || fit == 0 {
        return RowPlan {
            shown: 0,
            height: 0,
            hidden: items,
        };
    }
    if items > fit {
        // Keep the last row for "… N more".
        let shown = (available.saturating_sub(1) / min_each) as usize;
        return RowPlan {
            shown,
            height: min_each,
            hidden: items - shown,
        };
    }
    let height = (available / items as u16).clamp(min_each, max_each.max(min_each));
    RowPlan {
        shown: items,
        height,
        hidden: 0,
    }
}

/// One big number of the zoomed view.
pub struct Kpi {
    pub label: String,
    pub value: String,
    pub style: Style,
}

/// In the zoomed view, the panel's key numbers in big digits across the top. Returns the area
/// left below them (all of `inner` when there is no room or no zoom).
pub fn headline(buf: &mut Buffer, inner: Rect, ctx: &PanelCtx<'_>, kpis: &[Kpi]) -> Rect {
    if !ctx.zoomed || inner.height < HEADLINE_MIN_HEIGHT || kpis.is_empty() {
        return inner;
    }
    let mut x = inner.x;
    for kpi in kpis {
        let width = big_number::width(&kpi.value).max(kpi.label.chars().count() as u16);
        if x + width > inner.right() {
            break;
        }
        put_spans(
            buf,
            Rect::new(x, inner.y, width, 1),
            &[Span::styled(kpi.label.clone(), ctx.theme.muted())],
        );
        big_number::render(
            buf,
            Rect::new(x, inner.y + 1, width, big_number::HEIGHT),
            &kpi.value,
            kpi.style,
        );
        x += width + HEADLINE_SPACING;
    }
    below(inner, HEADLINE_HEIGHT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_grow_to_fill_and_overflow_says_how_many_are_hidden() {
        assert_eq!(
            plan_rows(3, 12, 1, 3),
            RowPlan {
                shown: 3,
                height: 3,
                hidden: 0
            }
        );
        assert_eq!(plan_rows(3, 7, 1, 3).height, 2);
        assert_eq!(
            plan_rows(8, 5, 1, 3),
            RowPlan {
                shown: 4,
                height: 1,
                hidden: 4
            }
        );
        assert_eq!(
            plan_rows(3, 5, 2, 4),
            RowPlan {
                shown: 2,
                height: 2,
                hidden: 1
            }
        );
        assert_eq!(plan_rows(2, 0, 1, 3).hidden, 2);
        assert_eq!(plan_rows(0, 5, 1, 3).shown, 0);
    }
}
