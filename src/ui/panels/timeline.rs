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
use crate::ui::widgets::text::{put_spans, put_wrapped};

use super::{PanelCtx, frame_panel, row};

/// From this width each line also shows the offset from the session start.
const OFFSET_MIN_WIDTH: u16 = 100;

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
    let visible = inner.height as usize;
    // Scrolled back, the last row says how much is hidden below.
    let scrolled_lines = visible.saturating_sub(1);
    let scroll = ctx
        .state
        .ui
        .timeline_scroll
        .min(events.len().saturating_sub(scrolled_lines));
    let lines = if scroll > 0 { scrolled_lines } else { visible };
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
        let last = text.lines().rev().nth(1).unwrap();
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
