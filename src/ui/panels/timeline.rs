//! Timeline: the recent events, newest at the bottom, wall-clock time and summary, each with a
//! symbol and colour by kind (down and crit red, up and ok green, marks and notes in the accent,
//! faults highlighted). Scrolls back `timeline_scroll` events. A long line wraps under its text
//! (up to two rows); the newest one shown is whole while the panel has the focus, and every
//! line is whole when zoomed or on a large screen.
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
use crate::ui::layout;
use crate::ui::widgets::badge;
use crate::ui::widgets::text::{put_spans, put_wrapped, width, wrapped_rows};

use super::{PanelCtx, frame_panel, row};

/// From this width each line also shows the offset from the session start.
const OFFSET_MIN_WIDTH: u16 = 90;
/// Rows a line may wrap over (the newest, in a focused panel, takes all it needs).
const LINE_MAX_ROWS: u16 = 2;

pub fn render(frame: &mut Frame, area: Rect, ctx: &PanelCtx<'_>) {
    let inner = frame_panel(frame, area, ctx, Panel::Timeline);
    let buf = frame.buffer_mut();
    let theme = ctx.theme;
    let events = &ctx.state.timeline;
    if events.is_empty() {
        put_wrapped(
            buf,
            inner,
            &[Span::styled(
                "no events yet — m marks a moment, n adds a note",
                theme.muted(),
            )],
            inner.height,
        );
        return;
    }
    // Scrolled back, the last row says how much is hidden below; it stops where the oldest
    // event would be the first of a full panel.
    let scroll = ctx.state.ui.timeline_scroll.min(
        events
            .len()
            .saturating_sub(inner.height.saturating_sub(1) as usize),
    );
    let rows = if scroll > 0 {
        inner.height.saturating_sub(1)
    } else {
        inner.height
    };
    let end = events.len() - scroll;
    let with_offset = inner.width >= OFFSET_MIN_WIDTH;
    // Lines wrap under their text instead of being cut: the newest one shown (the one the panel
    // is at) whole when the panel has the focus or the screen, the others up to a few rows.
    let line_max = if ctx.zoomed || inner.height >= layout::TALL_PANEL_ROWS {
        rows
    } else {
        LINE_MAX_ROWS
    };
    let mut shown: Vec<(Line<'_>, u16)> = Vec::new();
    let mut used = 0u16;
    for (n, event) in events.range(..end).rev().enumerate() {
        let line = line_of(event, with_offset, ctx);
        let max = if n == 0 && ctx.focused {
            rows
        } else {
            line_max
        };
        let height = wrapped_rows(&line.text, inner.width.saturating_sub(line.indent), max).max(1);
        if used + height > rows {
            // The rows left show the start of the next older line (or of the newest, when it
            // alone is taller than the panel).
            if used < rows {
                shown.push((line, rows - used));
            }
            break;
        }
        used += height;
        shown.push((line, height));
    }
    let mut y = inner.y;
    for (line, height) in shown.into_iter().rev() {
        put_spans(buf, Rect::new(inner.x, y, line.indent, 1), &line.prefix);
        let text = Rect::new(
            inner.x + line.indent,
            y,
            inner.width.saturating_sub(line.indent),
            height,
        );
        put_wrapped(buf, text, &line.text, height);
        y += height;
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

/// One event as the panel writes it: the time and symbol, then the text that wraps under itself.
struct Line<'a> {
    prefix: Vec<Span<'a>>,
    indent: u16,
    text: Vec<Span<'a>>,
}

fn line_of<'a>(event: &TimelineEvent, with_offset: bool, ctx: &PanelCtx<'a>) -> Line<'a> {
    let theme = ctx.theme;
    let (symbol, style) = look(event, theme);
    let mut prefix = vec![Span::styled(
        format!("{} ", format::clock(event.ts)),
        theme.muted(),
    )];
    if with_offset {
        prefix.push(Span::styled(
            format!("T+{} ", format::elapsed(event.offset_ms)),
            theme.muted(),
        ));
    }
    prefix.push(Span::styled(symbol, style));
    prefix.push(Span::raw(" "));
    let indent = width(&prefix);
    let summary = event.kind.summary().unwrap_or_default();
    let text = vec![Span::styled(
        ctx.state.config.redactor().text(&summary).into_owned(),
        style,
    )];
    Line {
        prefix,
        indent,
        text,
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
            phase: FaultPhase::Failed | FaultPhase::Refused,
            ..
        } => (badge::CRIT, theme.level(Level::Crit)),
        EventKind::Fault { .. } => ("◆", theme.text().patch(theme.fault())),
        EventKind::Check { passed: true, .. } => (badge::OK, theme.level(Level::Ok)),
        EventKind::Check { .. } => (badge::CRIT, theme.level(Level::Crit)),
        EventKind::Verdict { verdict, .. } => match verdict {
            crate::timeline::Verdict::Pass => (badge::OK, theme.level(Level::Ok)),
            _ => (badge::CRIT, theme.level(Level::Crit)),
        },
        EventKind::ScenarioStart { .. } | EventKind::ScenarioPhase { .. } => ("▶", theme.accent()),
        EventKind::Environment {
            production: true, ..
        } => (badge::WARN, theme.level(Level::Crit)),
        EventKind::SessionStart { .. }
        | EventKind::Environment { .. }
        | EventKind::SessionEnd { .. }
        | EventKind::ReportWritten { .. }
        | EventKind::Info { .. }
        | EventKind::Samples { .. }
        | EventKind::Setup { .. }
        | EventKind::Foreign { .. }
        | EventKind::ScenarioProgress { .. } => ("·", theme.text()),
    }
}

#[cfg(test)]
mod tests {
    use crate::state::Panel;
    use crate::ui::layout::panel_area;
    use crate::ui::test_support::*;
    use ratatui::layout::Rect;

    crate::ui::test_support::panel_snapshots!(Panel::Timeline, "timeline");

    #[test]
    fn newest_is_at_the_bottom_and_scrolling_back_says_what_is_hidden() {
        let mut state = state();
        let text = panel_text(&mut state, Panel::Timeline, 80, 24, false);
        // The newest line wraps over the last two rows.
        let last = text.lines().rev().nth(2).unwrap();
        assert!(last.contains("10:09:50 ✖ fault webhook-slow"), "{text}");
        state.ui.timeline_scroll = 3;
        let text = panel_text(&mut state, Panel::Timeline, 80, 24, false);
        insta::assert_snapshot!("timeline_scrolled_80x24", text);
        assert!(text.contains("↓ 3 newer"), "{text}");
        assert!(!text.contains("webhook-slow"), "{text}");
        // Scrolling further than there is stops at the oldest.
        state.ui.timeline_scroll = 10_000;
        let text = panel_text(&mut state, Panel::Timeline, 80, 24, false);
        assert!(
            text.contains("10:00:00 · session drill-2026-11-28"),
            "{text}"
        );
    }

    #[test]
    fn events_are_coloured_by_kind() {
        let state = state();
        let theme = theme();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, 160, 48), Panel::Timeline, false).unwrap();
        let fg_of = |needle: &str| buf[find_in(buf, area, needle).unwrap()].fg;
        assert_eq!(fg_of("nats DOWN: connection refused"), theme.palette.down);
        assert_eq!(fg_of("nats.TASKS.workers.pending CRIT"), theme.palette.crit);
        assert_eq!(fg_of("nats up"), theme.palette.ok);
        assert_eq!(fg_of("mark: baseline ok"), theme.palette.accent);
        assert_eq!(fg_of("note: API answered"), theme.palette.accent);
        let fault = find_in(buf, area, "fault pg-hold on postgres applied").unwrap();
        assert_eq!(buf[fault].bg, theme.palette.fault_span);
    }

    #[test]
    fn an_empty_timeline_says_how_to_start_one() {
        let mut state = empty_state();
        let text = panel_text(&mut state, Panel::Timeline, 80, 24, false);
        assert!(flat(&text).contains("no events yet — m marks a moment, n adds a note"));
    }
}
