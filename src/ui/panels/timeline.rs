//! Timeline: the recent events, newest at the bottom, wall-clock time and summary, each with a
//! symbol and colour by kind (down and crit red, up and ok green, marks and notes in the accent,
//! faults highlighted). Scrolls back `timeline_scroll` rows.
//!
//! ```text
//! 10:04:00 ✖ nats DOWN: connection refused
//! 10:05:00 ✔ nats up
//! 10:09:00 ◆ fault pg-hold on postgres applied (key 2)
//! ```

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Span;

use crate::metrics::Level;
use crate::state::Panel;
use crate::theme::Theme;
use crate::timeline::{EventKind, FaultPhase, TimelineEvent};
use crate::ui::format;
use crate::ui::widgets::badge;
use crate::ui::widgets::text::put_spans;

use super::{PanelCtx, frame_panel, row};

/// From this width each line also shows the offset from the session start.
const OFFSET_MIN_WIDTH: u16 = 100;

pub fn render(frame: &mut Frame, area: Rect, ctx: &PanelCtx<'_>) {
    let inner = frame_panel(frame, area, ctx, Panel::Timeline);
    let buf = frame.buffer_mut();
    let theme = ctx.theme;
    let events = &ctx.state.timeline;
    if events.is_empty() {
        put_spans(
            buf,
            row(inner, 0),
            &[Span::styled(
                "no events yet — m marks a moment, n adds a note",
                theme.muted(),
            )],
        );
        return;
    }
    let visible = inner.height as usize;
    let scroll = ctx
        .state
        .ui
        .timeline_scroll
        .min(events.len().saturating_sub(visible));
    // Scrolled back: the last row says how much is hidden below.
    let lines = if scroll > 0 {
        visible.saturating_sub(1)
    } else {
        visible
    };
    let end = events.len() - scroll;
    let start = end.saturating_sub(lines);
    let with_offset = inner.width >= OFFSET_MIN_WIDTH;
    for (n, event) in events.range(start..end).enumerate() {
        let (symbol, style) = look(event, theme);
        let mut spans = vec![Span::styled(
            format!("{} ", format::clock(event.ts)),
            theme.muted(),
        )];
        if with_offset {
            spans.push(Span::styled(
                format!("T+{} ", format::elapsed(event.offset_ms)),
                theme.muted(),
            ));
        }
        let summary = event.kind.summary().unwrap_or_default();
        spans.push(Span::styled(symbol, style));
        spans.push(Span::raw(" "));
        spans.push(Span::styled(ctx.redact(&summary).into_owned(), style));
        put_spans(buf, row(inner, n as u16), &spans);
    }
    if scroll > 0 {
        put_spans(
            buf,
            row(inner, inner.height.saturating_sub(1)),
            &[Span::styled(
                format!("↓ {scroll} newer (↓ scrolls down)"),
                theme.accent(),
            )],
        );
    }
}

/// The symbol and style of an event: the symbol carries the meaning, the colour repeats it.
fn look(event: &TimelineEvent, theme: &Theme) -> (&'static str, Style) {
    match &event.kind {
        EventKind::SourceDown { .. } => (badge::DOWN, theme.down()),
        EventKind::SourceUp { .. } => (badge::OK, theme.level(Level::Ok)),
        EventKind::Threshold { level, .. } => (badge::level_symbol(*level), theme.level(*level)),
        EventKind::Mark { .. } => ("●", theme.accent()),
        EventKind::Note { .. } => ("✎", theme.accent()),
        EventKind::Fault {
            phase: FaultPhase::Failed,
            ..
        } => (badge::CRIT, theme.level(Level::Crit)),
        EventKind::Fault { .. } => ("◆", theme.text().patch(theme.fault())),
        EventKind::SessionStart { .. }
        | EventKind::SessionEnd { .. }
        | EventKind::ReportWritten { .. }
        | EventKind::Info { .. }
        | EventKind::Samples { .. } => ("·", theme.text()),
    }
}
